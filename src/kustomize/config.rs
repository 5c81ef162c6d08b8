//! `configurations`: field specs a kustomization adds to kustomize's builtin ones (for custom
//! resources, mostly): where labels, annotations, namespaces, images, replicas, vars and name
//! references live in kinds kustomize does not know.

use serde::Deserialize;

use super::fieldspec::{FieldSpec, NameReference};

/// The extra field specs of a build, merged from every kustomization's `configurations`.
#[derive(Debug, Clone, Default)]
pub struct TransformerConfig {
    pub common_labels: Vec<FieldSpec>,
    pub template_labels: Vec<FieldSpec>,
    pub common_annotations: Vec<FieldSpec>,
    pub namespace: Vec<FieldSpec>,
    pub images: Vec<FieldSpec>,
    pub replicas: Vec<FieldSpec>,
    pub var_reference: Vec<FieldSpec>,
    pub name_reference: Vec<NameReference>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    common_labels: Vec<FieldSpec>,
    #[serde(default)]
    template_labels: Vec<FieldSpec>,
    #[serde(default)]
    common_annotations: Vec<FieldSpec>,
    #[serde(default)]
    namespace: Vec<FieldSpec>,
    #[serde(default)]
    images: Vec<FieldSpec>,
    #[serde(default)]
    replicas: Vec<FieldSpec>,
    #[serde(default)]
    var_reference: Vec<FieldSpec>,
    #[serde(default)]
    name_reference: Vec<NameReferenceEntry>,
    #[serde(default)]
    name_prefix: Vec<FieldSpec>,
    #[serde(default)]
    name_suffix: Vec<FieldSpec>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NameReferenceEntry {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    version: Option<String>,
    kind: String,
    #[serde(default)]
    field_specs: Vec<FieldSpec>,
}

/// The `namePrefix` and `nameSuffix` field specs of a configuration file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NameSpecs {
    pub prefix: Vec<FieldSpec>,
    pub suffix: Vec<FieldSpec>,
}

impl NameSpecs {
    /// kustomize's builtin ones: the object's own name.
    pub fn builtin() -> NameSpecs {
        let name = vec![FieldSpec { path: "metadata/name".into(), ..FieldSpec::default() }];
        NameSpecs { prefix: name.clone(), suffix: name }
    }

    /// kustomize's `TransformerConfig.Merge` of these lists (see [`merge_kustomize`]).
    pub fn merge(&self, incoming: &NameSpecs) -> Result<NameSpecs, String> {
        Ok(NameSpecs { prefix: merge_kustomize(&self.prefix, &incoming.prefix)?, suffix: merge_kustomize(&self.suffix, &incoming.suffix)? })
    }
}

/// kustomize's `FsSlice.MergeAll`, then its sort: an incoming spec is dropped when one already
/// there has its path and is selected by the incoming one's group/version/kind (an incoming
/// spec without a kind selects any, so `metadata/name` for all kinds is swallowed by a
/// `metadata/name` for one kind sorted before it); the same spec with another `create` is an
/// error. The result is sorted by kind rank, then `group_version_kind` (`~G`, `~V`, `~K` for
/// empty parts). This decides which objects a `namePrefix` renames once a `configurations`
/// file names kinds for it, exactly as kubectl kustomize does.
pub fn merge_kustomize(existing: &[FieldSpec], incoming: &[FieldSpec]) -> Result<Vec<FieldSpec>, String> {
    // Whether `spec`'s group/version/kind is selected by `selector`'s (empty parts select any).
    let selected = |spec: &FieldSpec, selector: &FieldSpec| {
        let matches = |wanted: &Option<String>, actual: &Option<String>| wanted.as_deref().is_none_or(|w| w.is_empty() || Some(w) == actual.as_deref());
        matches(&selector.group, &spec.group) && matches(&selector.version, &spec.version) && matches(&selector.kind, &spec.kind)
    };
    let mut merged: Vec<FieldSpec> = existing.to_vec();
    for spec in incoming {
        match merged.iter().find(|x| selected(x, spec) && x.path == spec.path) {
            Some(x) if x.create != spec.create => return Err("conflicting fieldspecs".into()),
            Some(_) => {}
            None => merged.push(spec.clone()),
        }
    }
    sort_specs(&mut merged);
    Ok(merged)
}

/// kustomize's order of field specs (`FsSlice.Less`): by kind rank, then `group_version_kind`.
pub fn sort_specs(specs: &mut [FieldSpec]) {
    let part = |value: &Option<String>, placeholder: &str| value.clone().filter(|v| !v.is_empty()).unwrap_or_else(|| placeholder.to_owned());
    specs.sort_by_cached_key(|s| {
        let rank = super::order::kind_rank(s.kind.as_deref().unwrap_or(""));
        (rank, format!("{}_{}_{}", part(&s.group, "~G"), part(&s.version, "~V"), part(&s.kind, "~K")))
    });
}

fn add_new(into: &mut Vec<FieldSpec>, specs: Vec<FieldSpec>) {
    for spec in specs {
        if !into.contains(&spec) {
            into.push(spec);
        }
    }
}

impl TransformerConfig {
    /// Adds what a `crds:` file says about custom kinds.
    pub fn merge_crds(&mut self, crds: super::openapi::CrdConfig) {
        add_new(&mut self.common_labels, crds.common_labels);
        add_new(&mut self.common_annotations, crds.common_annotations);
        for reference in crds.name_references {
            if !self.name_reference.contains(&reference) {
                self.name_reference.push(reference);
            }
        }
    }

    /// Reads one configuration file and adds its specs; returns its name prefix and suffix
    /// specs (sorted as kustomize reads them), which are scoped by kustomization.
    pub fn merge_file(&mut self, text: &str, file: &std::path::Path) -> Result<NameSpecs, super::Error> {
        let value = super::yaml::parse_value(text, file)?;
        if value.is_null() {
            return Ok(NameSpecs::default());
        }
        let parsed: ConfigFile =
            serde_json::from_value(value).map_err(|e| super::Error::InvalidKustomization { file: file.to_owned(), message: e.to_string() })?;
        let mut names = NameSpecs { prefix: parsed.name_prefix, suffix: parsed.name_suffix };
        sort_specs(&mut names.prefix);
        sort_specs(&mut names.suffix);
        add_new(&mut self.common_labels, parsed.common_labels);
        add_new(&mut self.template_labels, parsed.template_labels);
        add_new(&mut self.common_annotations, parsed.common_annotations);
        add_new(&mut self.namespace, parsed.namespace);
        add_new(&mut self.images, parsed.images);
        add_new(&mut self.replicas, parsed.replicas);
        add_new(&mut self.var_reference, parsed.var_reference);
        for entry in parsed.name_reference {
            let _ = entry.version;
            for referrer in entry.field_specs {
                self.name_reference.push(NameReference {
                    referent_group: entry.group.clone().unwrap_or_default(),
                    referent_kind: entry.kind.clone(),
                    referrer,
                });
            }
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: Option<&str>, path: &str, create: bool) -> FieldSpec {
        FieldSpec { kind: kind.map(str::to_owned), path: path.into(), create, ..FieldSpec::default() }
    }

    #[test]
    fn name_specs_merge_as_kustomize_merges_them() {
        let builtin = NameSpecs::builtin().prefix;
        // The builtin spec and one for a kind, merged into an empty accumulator: the kind's sorts
        // first and swallows the builtin one.
        let level = merge_kustomize(&builtin, &[spec(Some("ConfigMap"), "metadata/name", false)]).expect("merges");
        assert_eq!(level, vec![spec(Some("ConfigMap"), "metadata/name", false), spec(None, "metadata/name", false)]);
        assert_eq!(merge_kustomize(&[], &level).expect("merges"), vec![spec(Some("ConfigMap"), "metadata/name", false)]);
        // A kind kustomize sorts last keeps the builtin spec.
        let last = merge_kustomize(&builtin, &[spec(Some("ValidatingWebhookConfiguration"), "metadata/name", false)]).expect("merges");
        assert_eq!(merge_kustomize(&[], &last).expect("merges").len(), 2);
        // Another path is added; the same spec with another `create` conflicts.
        assert_eq!(merge_kustomize(&builtin, &[spec(Some("ConfigMap"), "data/x", true)]).expect("merges").len(), 2);
        assert!(merge_kustomize(&builtin, &[spec(None, "metadata/name", true)]).is_err());
    }
}
