//! `buildMetadata`: where each object came from (`config.kubernetes.io/origin`), which
//! transformers ran over it (`alpha.config.kubernetes.io/transformations`), and the
//! `app.kubernetes.io/managed-by` label, written as `kubectl kustomize` (kustomize v5.5) writes them.

use serde_json::Value;

pub const ORIGIN_ANNOTATION: &str = "config.kubernetes.io/origin";
pub const TRANSFORMATIONS_ANNOTATION: &str = "alpha.config.kubernetes.io/transformations";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// What `kubectl kustomize` (kustomize v5.5.0 built into kubectl, and kustomize as a library, as
/// in Flux) writes: its build has no release version stamped in.
pub const MANAGED_BY_VALUE: &str = "kustomize-(devel)";

/// Which of kustomize's `buildMetadata` options the root kustomization lists (the lists of
/// other kustomizations are ignored, as in kustomize).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildMetadata {
    pub origin_annotations: bool,
    pub transformer_annotations: bool,
    pub managed_by_label: bool,
}

impl BuildMetadata {
    /// kustomize accepts (and ignores) other values.
    pub fn from_options(options: &[String]) -> BuildMetadata {
        let has = |name: &str| options.iter().any(|o| o == name);
        BuildMetadata {
            origin_annotations: has("originAnnotations"),
            transformer_annotations: has("transformerAnnotations"),
            managed_by_label: has("managedByLabel"),
        }
    }

    /// kustomize tracks origins whenever the list is not empty.
    pub fn tracks_origins(options: &[String]) -> bool {
        !options.is_empty()
    }
}

/// Where a kustomization (or a file it names) is: a path from the folder of the build, or from
/// the root of a remote repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub path: String,
    pub repo: String,
    pub reference: String,
}

impl Location {
    /// The location of `entry`, named from this one.
    pub fn join(&self, entry: &str) -> Location {
        Location { path: join_clean(&self.path, entry), ..self.clone() }
    }
}

/// The generator or transformer configuration that made or changed an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfiguredBy {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

impl ConfiguredBy {
    /// One of kustomize's builtin plugins configured by a kustomization field.
    pub fn builtin(kind: &str) -> ConfiguredBy {
        ConfiguredBy { api_version: "builtin".into(), kind: kind.into(), ..ConfiguredBy::default() }
    }

    /// The plugin a `transformers:`/`generators:` document configures.
    pub fn of_document(document: &Value) -> ConfiguredBy {
        let text = |pointer: &str| document.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_owned();
        ConfiguredBy { api_version: text("/apiVersion"), kind: text("/kind"), name: text("/metadata/name"), namespace: text("/metadata/namespace") }
    }
}

/// kustomize's `Origin`: a resource file (`path`), or the configuration that generated an object
/// or transformed it (`configuredIn`, `configuredBy`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub path: String,
    pub repo: String,
    pub reference: String,
    pub configured_in: String,
    pub configured_by: Option<ConfiguredBy>,
}

impl Origin {
    /// An object read from the file at `location`.
    pub fn file(location: &Location) -> Origin {
        Origin { path: location.path.clone(), repo: location.repo.clone(), reference: location.reference.clone(), ..Origin::default() }
    }

    /// An object made, or a transformation done, by `by`, configured in the file at `location`.
    pub fn configured(location: &Location, by: ConfiguredBy) -> Origin {
        Origin {
            repo: location.repo.clone(),
            reference: location.reference.clone(),
            configured_in: location.path.clone(),
            configured_by: Some(by),
            ..Origin::default()
        }
    }

    /// The origin as YAML lines, in kustomize's field order.
    fn lines(&self, out: &mut Vec<String>) {
        for (key, value) in [("path", &self.path), ("repo", &self.repo), ("ref", &self.reference), ("configuredIn", &self.configured_in)] {
            if !value.is_empty() {
                out.push(format!("{key}: {}", scalar(value)));
            }
        }
        if let Some(by) = &self.configured_by {
            out.push("configuredBy:".into());
            for (key, value) in [("apiVersion", &by.api_version), ("kind", &by.kind), ("name", &by.name), ("namespace", &by.namespace)] {
                if !value.is_empty() {
                    out.push(format!("  {key}: {}", scalar(value)));
                }
            }
        }
    }

    /// The value of the origin annotation.
    pub fn to_yaml(&self) -> String {
        let mut lines = Vec::new();
        self.lines(&mut lines);
        lines.into_iter().map(|l| l + "\n").collect()
    }
}

/// The value of the transformations annotation: a YAML list of origins.
pub fn transformations_yaml(origins: &[Origin]) -> String {
    let mut out = String::new();
    for origin in origins {
        let mut lines = Vec::new();
        origin.lines(&mut lines);
        for (i, line) in lines.into_iter().enumerate() {
            out.push_str(if i == 0 { "- " } else { "  " });
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// A string as a YAML scalar (quoted when plain text would read as something else).
fn scalar(text: &str) -> String {
    let emitted = serde_saphyr::to_string(&Value::String(text.to_owned())).unwrap_or_else(|_| format!("{text:?}"));
    emitted.trim_end_matches('\n').to_owned()
}

/// Go's `filepath.Join`: the two paths joined, `.` and `x/..` removed lexically.
pub fn join_clean(base: &str, entry: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let absolute = base.starts_with('/') || (base.is_empty() && entry.starts_with('/'));
    for part in base.split('/').chain(entry.split('/')) {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    if absolute { format!("/{joined}") } else { joined }
}

/// Writes the annotations and label the options ask for on a finished object.
pub fn annotate(object: &mut Value, options: BuildMetadata, origin: Option<&Origin>, transformations: &[Origin]) {
    let mut annotations = Vec::new();
    if options.origin_annotations
        && let Some(origin) = origin
    {
        annotations.push((ORIGIN_ANNOTATION, origin.to_yaml()));
    }
    if options.transformer_annotations && !transformations.is_empty() {
        annotations.push((TRANSFORMATIONS_ANNOTATION, transformations_yaml(transformations)));
    }
    let labels: Vec<(&str, String)> = if options.managed_by_label { vec![(MANAGED_BY_LABEL, MANAGED_BY_VALUE.to_owned())] } else { Vec::new() };
    let Some(map) = object.as_object_mut() else { return };
    for (field, pairs) in [("annotations", annotations), ("labels", labels)] {
        if pairs.is_empty() {
            continue;
        }
        let metadata = map.entry("metadata").or_insert_with(|| Value::Object(Default::default()));
        let Some(metadata) = metadata.as_object_mut() else { continue };
        let entry = metadata.entry(field).or_insert_with(|| Value::Object(Default::default()));
        if !entry.is_object() {
            *entry = Value::Object(Default::default());
        }
        if let Some(entry) = entry.as_object_mut() {
            for (key, value) in pairs {
                entry.insert(key.to_owned(), Value::String(value));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_like_go() {
        assert_eq!(join_clean("", "cm.yaml"), "cm.yaml");
        assert_eq!(join_clean("../base", "cm.yaml"), "../base/cm.yaml");
        assert_eq!(join_clean("../base", "../common/x.yaml"), "../common/x.yaml");
        assert_eq!(join_clean("a/./b/", "../../../c"), "../c");
        assert_eq!(join_clean("", "./sub/"), "sub");
    }

    #[test]
    fn origins_print_in_kustomize_order() {
        let location = Location { path: "app/kustomization.yaml".into(), repo: "file:///r.git".into(), reference: "v1".into() };
        let origin = Origin::configured(&location, ConfiguredBy { name: "x".into(), ..ConfiguredBy::builtin("LabelTransformer") });
        assert_eq!(
            transformations_yaml(&[origin]),
            "- repo: file:///r.git\n  ref: v1\n  configuredIn: app/kustomization.yaml\n  configuredBy:\n    apiVersion: builtin\n    kind: LabelTransformer\n    name: x\n"
        );
        assert_eq!(Origin::file(&Location { path: "cm.yaml".into(), ..Location::default() }).to_yaml(), "path: cm.yaml\n");
    }
}
