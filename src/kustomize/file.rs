//! The kustomization file: every field kustomize knows, so that an unknown field is an error
//! naming it, and the ones out of ferroflux's scope (Helm, validators) are refused by name.

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
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub bases: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub components: Vec<String>,
    pub namespace: Option<String>,
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: Vec<Labels>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub images: Vec<Image>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub replicas: Vec<Replica>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub patches: Vec<Patch>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub patches_strategic_merge: Vec<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub patches_json6902: Vec<Patch>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub config_map_generator: Vec<Generator>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub secret_generator: Vec<Generator>,
    pub generator_options: Option<GeneratorOptions>,
    pub sort_options: Option<SortOptions>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub replacements: Vec<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub vars: Vec<Value>,
    /// OpenAPI definition files of custom types (name references, label and annotation fields).
    #[serde(default, deserialize_with = "null_as_default")]
    pub crds: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub configurations: Vec<String>,
    /// `path` (a custom schema) or `version` (a builtin one).
    pub openapi: Option<BTreeMap<String, String>>,
    /// `originAnnotations`, `transformerAnnotations`, `managedByLabel`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub build_metadata: Vec<String>,
    // Known to kustomize, out of scope for ferroflux: refused with a clear error when set.
    pub helm_charts: Option<Value>,
    pub helm_globals: Option<Value>,
    pub helm_chart_inflation_generator: Option<Value>,
    /// Builtin generator configurations (files or inline YAML); plugins are refused.
    #[serde(default, deserialize_with = "null_as_default")]
    pub generators: Vec<String>,
    /// Builtin transformer configurations (files or inline YAML); plugins are refused.
    #[serde(default, deserialize_with = "null_as_default")]
    pub transformers: Vec<String>,
    pub validators: Option<Value>,
}

/// A field written with no value (`patches:` followed only by commented-out entries, as in
/// every kubebuilder scaffold) is YAML's null: kustomize reads it as empty.
fn null_as_default<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(deserializer: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl Kustomization {
    /// The first field set that ferroflux cannot build, and why.
    pub fn unsupported(&self) -> Option<(&'static str, &'static str)> {
        let set = |v: &Option<Value>| v.as_ref().is_some_and(|v| !v.is_null());
        let never = "is out of scope: ferroflux runs no plugins, functions or Helm";
        [
            ("helmCharts", set(&self.helm_charts), never),
            ("helmGlobals", set(&self.helm_globals), never),
            ("helmChartInflationGenerator", set(&self.helm_chart_inflation_generator), never),
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
    /// Extra places to write the labels, beside the builtin ones.
    #[serde(default)]
    pub fields: Vec<super::fieldspec::FieldSpec>,
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

/// One `configMapGenerator` or `secretGenerator` entry.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Generator {
    #[serde(default)]
    pub name: String,
    pub namespace: Option<String>,
    pub behavior: Option<String>,
    #[serde(default)]
    pub literals: Vec<String>,
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub envs: Vec<String>,
    /// The single env file of kustomize's older format.
    pub env: Option<String>,
    /// Secrets only: the Secret's `type` (default `Opaque`).
    #[serde(rename = "type")]
    pub secret_type: Option<String>,
    pub options: Option<GeneratorOptions>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeneratorOptions {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub disable_name_suffix_hash: Option<bool>,
    pub immutable: Option<bool>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SortOptions {
    pub order: Option<String>,
    pub legacy_sort_options: Option<LegacySortOptions>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LegacySortOptions {
    #[serde(default)]
    pub order_first: Vec<String>,
    #[serde(default)]
    pub order_last: Vec<String>,
}
