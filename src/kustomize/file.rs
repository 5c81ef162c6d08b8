//! The kustomization file: every field kustomize knows, so that an unknown field is an error
//! naming it, and the ones ferroflux does not support yet are refused by name.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

pub const FILE_NAMES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Kustomization {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub metadata: Option<Value>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub bases: Vec<String>,
    #[serde(default)]
    pub components: Vec<String>,
    pub namespace: Option<String>,
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: Vec<Labels>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub images: Vec<Image>,
    #[serde(default)]
    pub replicas: Vec<Replica>,
    #[serde(default)]
    pub patches: Vec<Patch>,
    #[serde(default)]
    pub patches_strategic_merge: Vec<Value>,
    #[serde(default)]
    pub patches_json6902: Vec<Patch>,
    // Known to kustomize, not (yet) to ferroflux: refused with a clear error when set.
    pub config_map_generator: Option<Value>,
    pub secret_generator: Option<Value>,
    pub generator_options: Option<Value>,
    pub replacements: Option<Value>,
    pub vars: Option<Value>,
    pub crds: Option<Value>,
    pub configurations: Option<Value>,
    pub openapi: Option<Value>,
    pub build_metadata: Option<Value>,
    pub sort_options: Option<Value>,
    pub helm_charts: Option<Value>,
    pub helm_globals: Option<Value>,
    pub helm_chart_inflation_generator: Option<Value>,
    pub generators: Option<Value>,
    pub transformers: Option<Value>,
    pub validators: Option<Value>,
}

impl Kustomization {
    /// The first field set that ferroflux cannot build yet, and why.
    pub fn unsupported(&self) -> Option<(&'static str, &'static str)> {
        let set = |v: &Option<Value>| v.as_ref().is_some_and(|v| !v.is_null());
        let not_yet = "is not supported by ferroflux's kustomize engine yet";
        let never = "is out of scope: ferroflux runs no plugins, functions or Helm";
        [
            ("configMapGenerator", set(&self.config_map_generator), not_yet),
            ("secretGenerator", set(&self.secret_generator), not_yet),
            ("replacements", set(&self.replacements), not_yet),
            ("vars", set(&self.vars), not_yet),
            ("crds", set(&self.crds), not_yet),
            ("configurations", set(&self.configurations), not_yet),
            ("openapi", set(&self.openapi), not_yet),
            ("sortOptions", set(&self.sort_options), not_yet),
            ("helmCharts", set(&self.helm_charts), never),
            ("helmGlobals", set(&self.helm_globals), never),
            ("helmChartInflationGenerator", set(&self.helm_chart_inflation_generator), never),
            ("generators", set(&self.generators), never),
            ("transformers", set(&self.transformers), never),
            ("validators", set(&self.validators), never),
        ]
        .into_iter()
        .find(|(_, is_set, _)| *is_set)
        .map(|(field, _, why)| (field, why))
    }
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Labels {
    #[serde(default)]
    pub pairs: BTreeMap<String, String>,
    #[serde(default)]
    pub include_selectors: bool,
    #[serde(default)]
    pub include_templates: bool,
    pub fields: Option<Value>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Image {
    pub name: String,
    pub new_name: Option<String>,
    pub new_tag: Option<String>,
    pub digest: Option<String>,
    pub tag_suffix: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Replica {
    pub name: String,
    pub count: i64,
}

/// A patch: inline (`patch`) or from a file (`path`), with an optional target selector.
#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    pub path: Option<String>,
    pub patch: Option<String>,
    pub target: Option<Selector>,
    pub options: Option<BTreeMap<String, bool>>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    pub group: Option<String>,
    pub version: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub label_selector: Option<String>,
    pub annotation_selector: Option<String>,
}
