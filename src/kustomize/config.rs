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
    // Prefix and suffix specs are accepted (kustomize knows them) and have no effect beyond the
    // builtin `metadata/name`.
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

    /// Reads one configuration file and adds its specs.
    pub fn merge_file(&mut self, text: &str, file: &std::path::Path) -> Result<(), super::Error> {
        let value = super::yaml::parse_value(text, file)?;
        if value.is_null() {
            return Ok(());
        }
        let parsed: ConfigFile =
            serde_json::from_value(value).map_err(|e| super::Error::InvalidKustomization { file: file.to_owned(), message: e.to_string() })?;
        let _ = (parsed.name_prefix, parsed.name_suffix);
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
        Ok(())
    }
}
