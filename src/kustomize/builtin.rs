//! `transformers:` and `generators:` entries that configure kustomize's *builtin* plugins
//! (`apiVersion: builtin`, e.g. a `LabelTransformer` with its own field specs). Anything else
//! there is an external plugin or KRM function, which ferroflux does not run.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::fieldspec::FieldSpec;
use super::file::{Generator, GeneratorOptions, Image, Patch, Replica, Selector};

/// One builtin plugin configuration, as kustomize reads it.
#[derive(Debug, Clone)]
pub enum BuiltinTransformer {
    Labels {
        pairs: BTreeMap<String, String>,
        specs: Vec<FieldSpec>,
    },
    Annotations {
        pairs: BTreeMap<String, String>,
        specs: Vec<FieldSpec>,
    },
    Namespace {
        namespace: String,
        specs: Vec<FieldSpec>,
        unset_only: bool,
        subjects: super::transform::SubjectMode,
    },
    PrefixSuffix {
        prefix: String,
        suffix: String,
        specs: Vec<FieldSpec>,
        records: bool,
    },
    Image {
        image: Image,
        specs: Vec<FieldSpec>,
    },
    Replicas {
        replica: Replica,
        specs: Vec<FieldSpec>,
    },
    Patch(Patch),
    Json6902(Patch),
    StrategicMerge {
        paths: Vec<String>,
        inline: Option<String>,
    },
    /// A `ReplacementTransformer`: its `replacements` entries, as in a kustomization.
    Replacements(Vec<Value>),
    /// A `ValueAddTransformer`: `value` (empty: the kustomization folder's name) written at, or
    /// inserted as a path part into, each target's field.
    ValueAdd {
        value: String,
        targets: Vec<ValueAddTarget>,
    },
    /// A `HashTransformer`: generated objects get their content hash now (and again at the end
    /// of the build, as in kustomize).
    Hash,
}

/// One target of a `ValueAddTransformer`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct ValueAddTarget {
    #[serde(default)]
    pub selector: Option<Selector>,
    #[serde(default)]
    pub field_path: String,
    /// 1-based position of the path part `value` becomes; 0 replaces the whole field.
    #[serde(default)]
    pub file_path_position: i64,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    field_specs: Vec<FieldSpec>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    image_tag: Option<Image>,
    #[serde(default)]
    replica: Option<Replica>,
    #[serde(default)]
    patch: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    target: Option<Selector>,
    /// Patch options (`allowNameChange`…) or generator options, by kind.
    #[serde(default)]
    options: Option<Value>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    json_op: Option<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    patches: Option<String>,
    #[serde(default)]
    replacements: Vec<Value>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    targets: Vec<ValueAddTarget>,
    #[serde(default)]
    target_file_path: Option<String>,
    #[serde(default)]
    unset_only: bool,
    #[serde(default)]
    set_role_binding_subjects: Option<String>,
    // Generators.
    #[serde(default)]
    behavior: Option<String>,
    #[serde(default)]
    literals: Vec<String>,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    envs: Vec<String>,
    #[serde(default)]
    env: Option<String>,
    #[serde(rename = "type", default)]
    secret_type: Option<String>,
    #[serde(default)]
    immutable: Option<bool>,
    #[serde(default)]
    disable_name_suffix_hash: Option<bool>,
}

fn is_builtin(document: &Value) -> bool {
    document.get("apiVersion").and_then(Value::as_str) == Some("builtin")
}

fn kind_of(document: &Value) -> &str {
    document.get("kind").and_then(Value::as_str).unwrap_or("")
}

fn metadata_field(config: &Config, field: &str) -> Option<String> {
    config.metadata.as_ref().and_then(|m| m.get(field)).and_then(Value::as_str).map(str::to_owned)
}

fn parse(document: &Value) -> Result<Config, String> {
    let mut lenient = document.clone();
    if let Some(map) = lenient.as_object_mut() {
        // kustomize reads plugin configurations as Go structs: a field spec's keys it does not
        // know (a `name` filter, say) are ignored, and label or annotation values of any scalar
        // type are read as their text.
        if let Some(Value::Array(specs)) = map.get_mut("fieldSpecs") {
            for spec in specs.iter_mut().filter_map(Value::as_object_mut) {
                spec.retain(|k, _| matches!(k.as_str(), "group" | "version" | "kind" | "path" | "create"));
            }
        }
        for field in ["labels", "annotations"] {
            for value in map.get_mut(field).and_then(Value::as_object_mut).into_iter().flat_map(|pairs| pairs.values_mut()) {
                match value {
                    Value::Bool(b) => *value = Value::String(b.to_string()),
                    Value::Number(n) => *value = Value::String(n.to_string()),
                    _ => {}
                }
            }
        }
    }
    serde_json::from_value(lenient).map_err(|e| format!("invalid {} configuration: {e}", kind_of(document)))
}

fn refuse(document: &Value, what: &str) -> String {
    format!(
        "{what} {}/{} is an external plugin or KRM function: ferroflux runs only kustomize's builtin ones (apiVersion: builtin)",
        document.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
        kind_of(document)
    )
}

/// The builtin transformers configured by one `transformers:` document.
pub fn transformer(document: &Value) -> Result<BuiltinTransformer, String> {
    if !is_builtin(document) {
        return Err(refuse(document, "transformer"));
    }
    let config = parse(document)?;
    Ok(match kind_of(document) {
        "LabelTransformer" => BuiltinTransformer::Labels { pairs: config.labels, specs: config.field_specs },
        "AnnotationsTransformer" => BuiltinTransformer::Annotations { pairs: config.annotations, specs: config.field_specs },
        "NamespaceTransformer" => {
            let subjects = match config.set_role_binding_subjects.as_deref() {
                None | Some("" | "defaultOnly") => super::transform::SubjectMode::DefaultOnly,
                Some("allServiceAccounts") => super::transform::SubjectMode::AllServiceAccounts,
                Some("none") => super::transform::SubjectMode::None,
                Some(other) => {
                    return Err(format!(
                        "invalid value {other:?} for setRoleBindingSubjects: must be one of \"defaultOnly\", \"none\" or \"allServiceAccounts\""
                    ));
                }
            };
            BuiltinTransformer::Namespace {
                namespace: metadata_field(&config, "namespace").unwrap_or_default(),
                specs: config.field_specs,
                unset_only: config.unset_only,
                subjects,
            }
        }
        // kustomize's prefix and suffix plugins need field specs (`[]` does nothing).
        "PrefixSuffixTransformer" | "PrefixTransformer" | "SuffixTransformer" if document.get("fieldSpecs").is_none_or(Value::is_null) => {
            return Err(format!("plugin {} fails configuration: fieldSpecs is not expected to be nil", super::object::Id::of(document)));
        }
        kind @ ("PrefixSuffixTransformer" | "PrefixTransformer" | "SuffixTransformer") => BuiltinTransformer::PrefixSuffix {
            prefix: config.prefix.unwrap_or_default(),
            suffix: config.suffix.unwrap_or_default(),
            specs: config.field_specs,
            records: kind != "PrefixSuffixTransformer",
        },
        "ImageTagTransformer" => BuiltinTransformer::Image { image: config.image_tag.ok_or("ImageTagTransformer needs imageTag")?, specs: config.field_specs },
        "ReplicaCountTransformer" => {
            BuiltinTransformer::Replicas { replica: config.replica.ok_or("ReplicaCountTransformer needs replica")?, specs: config.field_specs }
        }
        "PatchTransformer" => {
            let options = config.options.map(serde_json::from_value).transpose().map_err(|e| format!("invalid PatchTransformer options: {e}"))?;
            BuiltinTransformer::Patch(Patch { path: config.path, patch: config.patch, target: config.target, options })
        }
        "PatchJson6902Transformer" => BuiltinTransformer::Json6902(Patch { path: config.path, patch: config.json_op, target: config.target, options: None }),
        "PatchStrategicMergeTransformer" => BuiltinTransformer::StrategicMerge { paths: config.paths, inline: config.patches },
        "ReplacementTransformer" => BuiltinTransformer::Replacements(config.replacements),
        "HashTransformer" => BuiltinTransformer::Hash,
        "ValueAddTransformer" => {
            if config.target_file_path.is_some() {
                return Err("ValueAddTransformer: targetFilePath is not supported by ferroflux's kustomize engine (list the targets inline)".into());
            }
            if config.targets.is_empty() {
                return Err("must specify at least one target".into());
            }
            for target in &config.targets {
                if target.field_path.is_empty() {
                    return Err("fieldPath cannot be empty".into());
                }
                if target.file_path_position < 0 {
                    return Err(format!("value of FilePathPosition ({}) cannot be negative", target.file_path_position));
                }
            }
            BuiltinTransformer::ValueAdd { value: config.value.unwrap_or_default().trim().to_owned(), targets: config.targets }
        }
        other => return Err(format!("builtin transformer {other} is not supported by ferroflux's kustomize engine")),
    })
}

/// The generator configured by one `generators:` document (a builtin ConfigMap or Secret
/// generator).
pub fn generator(document: &Value) -> Result<(super::generator::GeneratedKind, Generator), String> {
    if !is_builtin(document) {
        return Err(refuse(document, "generator"));
    }
    let kind = match kind_of(document) {
        "ConfigMapGenerator" => super::generator::GeneratedKind::ConfigMap,
        "SecretGenerator" => super::generator::GeneratedKind::Secret,
        other => return Err(format!("builtin generator {other} is not supported by ferroflux's kustomize engine")),
    };
    let config = parse(document)?;
    let options: Option<GeneratorOptions> =
        config.options.clone().map(serde_json::from_value).transpose().map_err(|e| format!("invalid {} options: {e}", kind_of(document)))?;
    let generator = Generator {
        name: config.name.clone().or_else(|| metadata_field(&config, "name")).unwrap_or_default(),
        namespace: config.namespace.clone().or_else(|| metadata_field(&config, "namespace")),
        behavior: config.behavior,
        literals: config.literals,
        files: config.files,
        envs: config.envs,
        env: config.env,
        secret_type: config.secret_type,
        options: options.or_else(|| {
            (config.disable_name_suffix_hash.is_some() || config.immutable.is_some()).then(|| GeneratorOptions {
                disable_name_suffix_hash: config.disable_name_suffix_hash,
                immutable: config.immutable,
                ..GeneratorOptions::default()
            })
        }),
    };
    Ok((kind, generator))
}
