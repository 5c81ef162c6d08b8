//! kustomize's transformer pipeline for one kustomization, in kustomize's order: strategic
//! merge patches, `patches`, namespace, prefix, suffix, labels, annotations, JSON 6902 patches,
//! replicas, images, replacements, then `transformers:` entries.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::object::Resource;
use super::{Builder, Error, FileUse, Id, Kustomization, builtin, fieldspec, file, json6902, metadata, object, patch, replacement, select, transform, yaml};

impl Builder<'_> {
    /// The documents of a patch (inline or from a file): one JSON 6902 list, or strategic
    /// merge patches.
    pub(super) fn patch_documents(&self, dir: &Path, file: &Path, patch: &file::Patch) -> Result<(PathBuf, Vec<Value>), Error> {
        // kustomize's PatchTransformer takes one of `path` and `patch` (a blank `patch` is none).
        let blank = patch.patch.as_deref().is_some_and(|p| p.trim().is_empty());
        let (source, text) = match (&patch.path, &patch.patch) {
            (Some(_), Some(_)) if !blank => {
                return Err(Error::Patch { file: file.to_owned(), message: "patch and path can't be set at the same time".into() });
            }
            (None, _) if blank || patch.patch.is_none() => {
                return Err(Error::Patch { file: file.to_owned(), message: "must specify one of patch and path in the patch entry".into() });
            }
            (Some(path), _) => {
                let (path, bytes) = self.read(dir, path)?;
                let bytes = self.filtered(&path, FileUse::Patch, bytes)?;
                let text = String::from_utf8(bytes).map_err(|_| Error::Yaml { file: path.clone(), message: "the file is not UTF-8".into() })?;
                (path, text)
            }
            (None, Some(text)) => (file.to_owned(), text.clone()),
            (None, None) => return Err(Error::Patch { file: file.to_owned(), message: "must specify one of patch and path in the patch entry".into() }),
        };
        // kustomize reads a patch that starts with `[` as JSON operations, strictly: a YAML flow
        // list there (`[{op: add, …}]`) is an error.
        if text.starts_with('[') {
            return match serde_json::from_str::<Value>(&text) {
                Ok(list) => Ok((source, vec![list])),
                Err(e) => Err(Error::Patch { file: source, message: format!("unable to parse SM or JSON patch: {e}") }),
            };
        }
        match yaml::parse_value(&text, &source) {
            Ok(list @ Value::Array(_)) => Ok((source, vec![list])),
            Ok(Value::String(_) | Value::Number(_) | Value::Bool(_)) => {
                // kustomize quotes the whole text; from Git it may be any size, and the message
                // ends up in the Kustomization's status: the start says which patch it is.
                let start: String = text.chars().take(80).collect();
                let more = if start.len() < text.len() { "…" } else { "" };
                Err(Error::Patch { file: source, message: format!("unable to parse SM or JSON patch from {start:?}{more}") })
            }
            _ => Ok((source.clone(), yaml::parse_patch_objects(&text, &source)?)),
        }
    }

    pub(super) fn apply_patch(&self, dir: &Path, file: &Path, patch: &file::Patch, resources: &mut [Resource], json6902_only: bool) -> Result<(), Error> {
        let (source, documents) = self.patch_documents(dir, file, patch)?;
        let patch_error = |message: String| Error::Patch { file: source.clone(), message };
        let several = documents.len() > 1;
        for document in documents {
            if json6902_only && !document.is_array() {
                return Err(patch_error("a patchesJson6902 patch must be a list of operations".into()));
            }
            if document.is_array() && patch.target.is_none() {
                return Err(patch_error("must specify a target for JSON patch".into()));
            }
            if several && !document.is_array() && patch.target.is_some() {
                return Err(patch_error("Multiple Strategic-Merge Patches in one `patches` entry is not allowed to set `patches.target` field".into()));
            }
            let mut applied = false;
            let patch_id = Id::of(&document);
            if let Some(target) = &patch.target {
                select::check_patterns(target).map_err(|e| patch_error(e.to_string()))?;
            }
            // A patch without a target applies to the one object its own id names (current or
            // earlier name, same version): kustomize refuses one that names several.
            if patch.target.is_none() && !document.is_array() {
                let matching = resources.iter().filter(|r| !r.object.is_null() && r.matches_any_id(&patch_id)).count();
                if matching > 1 {
                    return Err(patch_error(format!("multiple matches for Id {patch_id}; failed to find unique target for patch {patch_id}")));
                }
            }
            for resource in resources.iter_mut().filter(|r| !r.object.is_null()) {
                let selected = match &patch.target {
                    Some(target) => select::selects_patch_target(target, resource).map_err(|e| patch_error(e.to_string()))?,
                    None => resource.matches_any_id(&patch_id),
                };
                if !selected {
                    continue;
                }
                applied = true;
                if document.is_array() {
                    // kustomize records the id of every object a JSON patch visits: one it
                    // renames is then found by its old name.
                    resource.remember();
                    json6902_like_kustomize(&mut resource.object, &document).map_err(|e| patch_error(format!("{e} (in {})", resource.id())))?;
                    resource.explicit_nulls = object::ExplicitNulls::All;
                } else {
                    let schema = self.schema.get_or_init(|| None).as_ref();
                    patch::strategic_merge_keeping_nulls(&mut resource.object, &without_identity(&document), schema, &mut resource.explicit_nulls)
                        .map_err(|e| patch_error(format!("{e} (in {})", resource.id())))?;
                    // With `allowNameChange` / `allowKindChange`, the patch's name and kind win.
                    let allowed = |option: &str| patch.options.as_ref().is_some_and(|o| o.get(option).copied().unwrap_or(false));
                    let new_name = (allowed("allowNameChange") && !patch_id.name.is_empty()).then_some(patch_id.name.as_str());
                    let new_kind = (allowed("allowKindChange") && !patch_id.kind.is_empty()).then_some(patch_id.kind.as_str());
                    resource.change_identity(new_name, new_kind);
                }
            }
            if !applied && patch.target.is_none() {
                return Err(patch_error(format!("no resource matches strategic merge patch \"{patch_id}\"")));
            }
        }
        Ok(())
    }

    pub(super) fn transform(&mut self, dir: &Path, file: &Path, k: &Kustomization, mut resources: Vec<Resource>) -> Result<Vec<Resource>, Error> {
        for entry in &k.patches_strategic_merge {
            let patch = match entry {
                Value::String(text) if !text.contains('\n') && !text.contains(':') => file::Patch { path: Some(text.clone()), ..file::Patch::default() },
                Value::String(text) => file::Patch { patch: Some(text.clone()), ..file::Patch::default() },
                other => file::Patch { patch: Some(other.to_string()), ..file::Patch::default() },
            };
            self.apply_patch(dir, file, &patch, &mut resources, false)?;
        }
        if !k.patches_strategic_merge.is_empty() {
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("PatchStrategicMergeTransformer"));
        }
        for patch in &k.patches {
            self.apply_patch(dir, file, patch, &mut resources, false)?;
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("PatchTransformer"));
        }
        resources.retain(|r| !r.object.is_null());
        let config = &self.config;
        let with_custom = |builtin: &[fieldspec::FieldSpec], custom: &[fieldspec::FieldSpec]| -> Vec<fieldspec::FieldSpec> {
            builtin.iter().chain(custom).cloned().collect()
        };
        if let Some(namespace) = k.namespace.as_deref().filter(|n| !n.is_empty()) {
            transform::set_namespace(&mut resources, namespace);
            transform::set_custom_namespace_fields(&mut resources, namespace, &config.namespace);
            transform::check_namespace_conflicts(&resources).map_err(|message| Error::Plugin { file: file.to_owned(), message })?;
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("NamespaceTransformer"));
        }
        let config = &self.config;
        let (prefix, suffix) = (k.name_prefix.as_deref().unwrap_or(""), k.name_suffix.as_deref().unwrap_or(""));
        transform::add_prefix_suffix(&mut resources, prefix, suffix, &self.name_specs);
        if !prefix.is_empty() {
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("PrefixTransformer"));
        }
        if !suffix.is_empty() {
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("SuffixTransformer"));
        }
        if !k.common_labels.is_empty() {
            transform::add_pairs(&mut resources, &k.common_labels, &with_custom(&fieldspec::COMMON_LABEL_SPECS, &config.common_labels));
        }
        for labels in &k.labels {
            let mut specs = transform::label_specs(labels.include_selectors, labels.include_templates, &labels.fields);
            if labels.include_selectors {
                specs.extend(config.common_labels.iter().cloned());
            } else if labels.include_templates {
                specs.extend(config.template_labels.iter().cloned());
            }
            transform::add_pairs(&mut resources, &labels.pairs, &specs);
        }
        // kustomize runs one label transformer per `labels` entry and one for `commonLabels`.
        if !k.labels.is_empty() || !k.common_labels.is_empty() {
            for _ in 0..=k.labels.len() {
                self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("LabelTransformer"));
            }
        }
        let config = &self.config;
        if !k.common_annotations.is_empty() {
            transform::add_pairs(&mut resources, &k.common_annotations, &with_custom(&fieldspec::COMMON_ANNOTATION_SPECS, &config.common_annotations));
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("AnnotationsTransformer"));
        }
        for patch in &k.patches_json6902 {
            if patch.target.is_none() {
                return Err(Error::Patch { file: file.to_owned(), message: "a patchesJson6902 entry needs a target".into() });
            }
            self.apply_patch(dir, file, patch, &mut resources, true)?;
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("PatchJson6902Transformer"));
        }
        // One replica and one image transformer per entry, as kustomize configures them.
        for replica in &k.replicas {
            transform::set_replicas(&mut resources, std::slice::from_ref(replica), &self.config.replicas)
                .map_err(|message| Error::Replicas { file: file.to_owned(), message })?;
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("ReplicaCountTransformer"));
        }
        for image in &k.images {
            transform::set_images(&mut resources, std::slice::from_ref(image), &self.config.images)
                .map_err(|message| Error::Images { file: file.to_owned(), message })?;
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("ImageTagTransformer"));
        }
        if !k.replacements.is_empty() {
            let mut read = |relative: &str| -> Result<String, String> { self.read_text(dir, relative).map(|(_, text)| text).map_err(|e| e.to_string()) };
            replacement::apply(&k.replacements, &mut resources, &mut read).map_err(|message| Error::Replacement { file: file.to_owned(), message })?;
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("ReplacementTransformer"));
        }
        // `transformers:` configuring builtin transformers run after the fields, as in kustomize.
        for (configured_in, document) in self.plugin_documents(dir, file, &k.transformers)? {
            let plugin_error = |message: String| Error::Plugin { file: file.to_owned(), message };
            match builtin::transformer(&document).map_err(plugin_error)? {
                builtin::BuiltinTransformer::Labels { pairs, specs } | builtin::BuiltinTransformer::Annotations { pairs, specs } => {
                    transform::add_pairs(&mut resources, &pairs, &specs)
                }
                builtin::BuiltinTransformer::Namespace { namespace, specs, unset_only, subjects } => {
                    if !namespace.is_empty() {
                        transform::set_namespace_at(&mut resources, &namespace, &specs, unset_only, subjects).map_err(plugin_error)?;
                        transform::check_namespace_conflicts(&resources).map_err(plugin_error)?;
                    }
                }
                builtin::BuiltinTransformer::PrefixSuffix { prefix, suffix, specs, records } => {
                    transform::add_prefix_suffix_at(&mut resources, &prefix, &suffix, &specs, records)
                }
                builtin::BuiltinTransformer::Image { image, specs } => {
                    transform::set_images(&mut resources, std::slice::from_ref(&image), &specs)
                        .map_err(|message| Error::Images { file: file.to_owned(), message })?;
                }
                builtin::BuiltinTransformer::Replicas { replica, specs } => {
                    let specs = if specs.is_empty() { fieldspec::REPLICA_SPECS.clone() } else { specs };
                    transform::set_replicas(&mut resources, std::slice::from_ref(&replica), &specs)
                        .map_err(|message| Error::Replicas { file: file.to_owned(), message })?;
                }
                builtin::BuiltinTransformer::Patch(patch) => {
                    self.apply_patch(dir, file, &patch, &mut resources, false)?;
                    resources.retain(|r| !r.object.is_null());
                }
                builtin::BuiltinTransformer::Json6902(patch) => self.apply_patch(dir, file, &patch, &mut resources, true)?,
                builtin::BuiltinTransformer::StrategicMerge { paths, inline } => {
                    for path in paths {
                        self.apply_patch(dir, file, &file::Patch { path: Some(path), ..file::Patch::default() }, &mut resources, false)?;
                    }
                    if let Some(text) = inline {
                        self.apply_patch(dir, file, &file::Patch { patch: Some(text), ..file::Patch::default() }, &mut resources, false)?;
                    }
                    resources.retain(|r| !r.object.is_null());
                }
                builtin::BuiltinTransformer::ValueAdd { value, targets } => {
                    // An empty value is the name of the kustomization's folder, as in kustomize.
                    let value = if value.is_empty() { dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default() } else { value };
                    for target in &targets {
                        for resource in resources.iter_mut() {
                            let selected = match &target.selector {
                                Some(selector) => select::selects_patch_target(selector, resource).map_err(|e| plugin_error(e.to_string()))?,
                                None => true,
                            };
                            if !selected {
                                continue;
                            }
                            if target.field_path == "metadata/namespace" {
                                // kustomize runs its namespace filter there (subjects named
                                // `default` follow).
                                transform::set_namespace_at(std::slice::from_mut(resource), &value, &[], false, transform::SubjectMode::DefaultOnly)
                                    .map_err(plugin_error)?;
                            } else {
                                transform::add_value(&mut resource.object, &target.field_path, target.file_path_position, &value).map_err(plugin_error)?;
                            }
                        }
                    }
                }
                builtin::BuiltinTransformer::Hash => {
                    // kustomize's HashTransformer leaves the objects needing a hash: the build's
                    // own one hashes them again at the end.
                    for resource in resources.iter_mut().filter(|r| r.needs_hash) {
                        let new_name = format!("{}-{}", object::name(&resource.object), super::generator::content_hash(&resource.object));
                        resource.rename(&new_name);
                    }
                }
                builtin::BuiltinTransformer::Replacements(entries) => {
                    let mut read =
                        |relative: &str| -> Result<String, String> { self.read_text(dir, relative).map(|(_, text)| text).map_err(|e| e.to_string()) };
                    replacement::apply(&entries, &mut resources, &mut read).map_err(|message| Error::Replacement { file: file.to_owned(), message })?;
                }
            }
            self.record(&mut resources, file, configured_in, metadata::ConfiguredBy::of_document(&document));
        }
        Ok(resources)
    }
}

/// A JSON 6902 patch as kustomize applies it: its objects always carry (internal) annotations,
/// so `metadata/annotations` exists for the patch even when the object has none.
fn json6902_like_kustomize(object: &mut Value, operations: &Value) -> Result<(), String> {
    let metadata_without_annotations = object.get("metadata").and_then(Value::as_object).is_some_and(|m| !m.contains_key("annotations"));
    if metadata_without_annotations && let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("annotations".into(), Value::Object(Default::default()));
    }
    let result = json6902::apply(object, operations);
    if metadata_without_annotations
        && let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut)
        && metadata.get("annotations").and_then(Value::as_object).is_some_and(|a| a.is_empty())
    {
        metadata.remove("annotations");
    }
    result
}

/// A strategic merge patch's own identity is not part of what it changes.
fn without_identity(patch: &Value) -> Value {
    let mut patch = patch.clone();
    if let Some(map) = patch.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("name");
            meta.remove("namespace");
            if meta.is_empty() {
                map.remove("metadata");
            }
        }
    }
    patch
}
