//! kustomize's accumulation of one kustomization: its `resources` (files, and folders with their
//! own kustomization, built first), `configurations` and `crds`, its generators, its
//! `components`, then its transformers (pipeline.rs) and `vars`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::loader::Entry;
use super::object::{ObjectKey, Resource};
use super::{Builder, Error, FileUse, Id, Kustomization, builtin, config, file, generator, limits, metadata, object, openapi, vars, yaml};

impl Builder<'_> {
    pub(super) fn build_dir(&mut self, dir: &Path) -> Result<Vec<Resource>, Error> {
        let (file, kustomization) = self.load(dir)?;
        if kustomization.kind.as_deref() == Some("Component") {
            return Err(Error::Component { file, message: "a Component can only be used in 'components', not in 'resources'".into() });
        }
        self.build_kustomization(dir, &file, kustomization)
    }

    /// Builds a kustomization (a Component is built by [`Builder::accumulate_component`]).
    pub(super) fn build_kustomization(&mut self, dir: &Path, file: &Path, k: Kustomization) -> Result<Vec<Resource>, Error> {
        self.enter(dir, file, &k)?;
        // Each kustomization accumulates its own name specs, as kustomize gives each its own
        // accumulator; the parent merges them once the kustomization is built.
        let parent = std::mem::take(&mut self.name_specs);
        let result = self.accumulate(dir, file, &k, Vec::new());
        self.built_name_specs = std::mem::replace(&mut self.name_specs, parent);
        self.stack.pop();
        result
    }

    pub(super) fn enter(&mut self, dir: &Path, file: &Path, k: &Kustomization) -> Result<(), Error> {
        if let Some((field, why)) = k.unsupported() {
            return Err(Error::Unsupported { file: file.to_owned(), field, why });
        }
        if self.stack.iter().any(|d| d == dir) {
            return Err(Error::Cycle { dir: dir.to_owned() });
        }
        if self.stack.len() >= limits::MAX_NESTING {
            return Err(Error::InvalidKustomization {
                file: file.to_owned(),
                message: format!("kustomizations nest more than {} levels deep (a base of a base of ...)", limits::MAX_NESTING),
            });
        }
        if let Some(settings) = &k.openapi {
            self.choose_schema(dir, file, settings)?;
        }
        self.stack.push(dir.to_owned());
        Ok(())
    }

    /// `openapi:` of a kustomization: a builtin version must be one kustomize has; a custom
    /// schema becomes the build's schema unless one was chosen (or used) before.
    pub(super) fn choose_schema(&self, dir: &Path, file: &Path, settings: &BTreeMap<String, String>) -> Result<(), Error> {
        let invalid = |message: &str| Error::InvalidKustomization { file: file.to_owned(), message: format!("openapi: {message}") };
        let version = settings.get("version").map(String::as_str).unwrap_or("");
        match settings.get("path") {
            Some(_) if settings.contains_key("version") => Err(invalid("builtin version and custom schema provided, cannot use both")),
            Some(path) => {
                let (path, text) = self.read_text(dir, path)?;
                let schema = openapi::OpenApi::parse(&text, &path)?;
                // Already decided: the first schema (or the builtin one, once used) stays.
                let _ = self.schema.set(Some(schema));
                Ok(())
            }
            None if version.is_empty() => Ok(()),
            None if !openapi::BUILTIN_VERSIONS.contains(&version) => Err(invalid(&format!(
                "the specified OpenAPI version {version:?} is not built in (kustomize v5.5 has {})",
                openapi::BUILTIN_VERSIONS.join(", ")
            ))),
            // Naming the builtin version decides the schema, as in kustomize.
            None => {
                let _ = self.schema.set(None);
                Ok(())
            }
        }
    }

    /// A component: it transforms what its parent accumulated so far.
    pub(super) fn accumulate_component(&mut self, component_dir: &Path, resources: Vec<Resource>) -> Result<Vec<Resource>, Error> {
        let (component_file, component_k) = self.load(component_dir)?;
        if component_k.kind.as_deref() != Some("Component") {
            return Err(Error::Component { file: component_file, message: "a kustomization listed in 'components' must have 'kind: Component'".into() });
        }
        self.enter(component_dir, &component_file, &component_k)?;
        let result = self.accumulate(component_dir, &component_file, &component_k, resources);
        self.stack.pop();
        result
    }

    /// Adds resources, refusing a second object with the same id. `seen` holds the ids of
    /// `resources`, kept along so that adding many files stays linear.
    pub(super) fn append(resources: &mut Vec<Resource>, seen: &mut std::collections::HashSet<ObjectKey>, found: Vec<Resource>) -> Result<(), Error> {
        for resource in &found {
            let id = resource.id();
            if !seen.insert(ObjectKey::of(&id)) {
                return Err(Error::DuplicateId { id: id.to_string() });
            }
        }
        resources.extend(found);
        Ok(())
    }

    /// kustomize's accumulation of one kustomization, on top of `resources` (non-empty for a
    /// component, which transforms what its parent accumulated so far).
    pub(super) fn accumulate(&mut self, dir: &Path, file: &Path, k: &Kustomization, mut resources: Vec<Resource>) -> Result<Vec<Resource>, Error> {
        let mut seen: std::collections::HashSet<ObjectKey> = resources.iter().map(|r| ObjectKey::of(&r.id())).collect();
        for entry in k.resources.iter().chain(k.bases.iter()) {
            let path = match self.entry(dir, entry)? {
                Entry::Local(path) => path,
                Entry::Remote(spec) => {
                    let found = self.with_remote(&spec, entry, |builder, base_dir| builder.build_dir(base_dir))?;
                    Self::append(&mut resources, &mut seen, found)?;
                    self.merge_built_name_specs(file)?;
                    continue;
                }
            };
            let found = if path.is_dir() {
                self.locations.push(self.location().join(entry));
                let built = self.build_dir(&path);
                self.locations.pop();
                let built = built?;
                self.merge_built_name_specs(file)?;
                built
            } else {
                let path = self.file_inside(dir, &path)?;
                let bytes = std::fs::read(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
                let bytes = self.filtered(&path, FileUse::Resource, bytes)?;
                let text = String::from_utf8(bytes).map_err(|_| Error::Yaml { file: path.clone(), message: "the file is not UTF-8".into() })?;
                let objects = yaml::parse_resources(&text, &path)?;
                let mut found = Vec::with_capacity(objects.len());
                for (object, explicit_nulls) in objects {
                    // kustomize needs a kind; an object without apiVersion is built as it is.
                    if object::kind(&object).is_empty() {
                        return Err(Error::Yaml { file: path.clone(), message: "missing kind in a resource".into() });
                    }
                    if object::kind(&object) == "Kustomization" && object::api_version(&object).starts_with("kustomize.config.k8s.io") {
                        return Err(Error::Yaml {
                            file: path.clone(),
                            message: "a kustomization file cannot be a resource: name its directory instead".into(),
                        });
                    }
                    let mut resource = Resource::read(object, explicit_nulls);
                    if self.track_origins {
                        resource.origin = Some(metadata::Origin::file(&self.location().join(entry)));
                    }
                    found.push(resource);
                }
                found
            };
            Self::append(&mut resources, &mut seen, found)?;
        }
        let mut custom_names = config::NameSpecs::default();
        for entry in &k.configurations {
            let (path, text) = self.read_text(dir, entry)?;
            let names = self.config.merge_file(&text, &path)?;
            custom_names = custom_names.merge(&names).map_err(|message| Error::InvalidKustomization { file: path.clone(), message })?;
        }
        let level = config::NameSpecs::builtin().merge(&custom_names).map_err(|message| Error::InvalidKustomization { file: file.to_owned(), message })?;
        self.name_specs = self.name_specs.merge(&level).map_err(|message| Error::InvalidKustomization { file: file.to_owned(), message })?;
        for entry in &k.crds {
            let (path, text) = self.read_text(dir, entry)?;
            self.config.merge_crds(openapi::crd_config(&text, &path)?);
        }
        self.generate(dir, file, k, &mut resources)?;
        for entry in &k.components {
            let component_dir = match self.entry(dir, entry)? {
                Entry::Local(path) => path,
                Entry::Remote(spec) => {
                    let accumulated = std::mem::take(&mut resources);
                    resources = self.with_remote(&spec, entry, |builder, component_dir| builder.accumulate_component(component_dir, accumulated))?;
                    continue;
                }
            };
            self.locations.push(self.location().join(entry));
            let result = self.accumulate_component(&component_dir, std::mem::take(&mut resources));
            self.locations.pop();
            resources = result?;
        }
        let mut resources = self.transform(dir, file, k, resources)?;
        for var in vars::parse(&k.vars).map_err(|message| Error::Vars { file: file.to_owned(), message })? {
            if self.vars.iter().any(|v| v.name == var.name) {
                return Err(Error::Vars { file: file.to_owned(), message: format!("var '{}' already encountered", var.name) });
            }
            vars::bind(&var, &mut resources).map_err(|message| Error::Vars { file: file.to_owned(), message })?;
            self.vars.push(var);
        }
        Ok(resources)
    }

    /// Merges the name specs of the kustomization just built (a base) into this one's.
    fn merge_built_name_specs(&mut self, file: &Path) -> Result<(), Error> {
        let built = std::mem::take(&mut self.built_name_specs);
        self.name_specs = self.name_specs.merge(&built).map_err(|message| Error::InvalidKustomization { file: file.to_owned(), message })?;
        Ok(())
    }

    /// The documents of `transformers:` or `generators:` entries: files (in or below the
    /// kustomization's folder) or inline YAML, each with the file it was configured in (`None`:
    /// the kustomization itself).
    pub(super) fn plugin_documents<'e>(&mut self, dir: &Path, file: &Path, entries: &'e [String]) -> Result<Vec<(Option<&'e str>, Value)>, Error> {
        let mut documents = Vec::new();
        for entry in entries {
            let inline = entry.contains('\n') || entry.contains(": ");
            let (source, text) = if inline {
                (file.to_owned(), entry.clone())
            } else {
                // A folder is a kustomization whose output is the plugin configurations, as in
                // kustomize (built like a base: its own transformers run over them).
                if let Some(path) = self.locate(&dir.join(entry))?.filter(|path| path.is_dir()) {
                    let configs = self.build_dir(&path)?;
                    documents.extend(configs.into_iter().map(|r| (Some(entry.as_str()), r.object)));
                    continue;
                }
                self.read_text(dir, entry)?
            };
            let configured_in = (!inline).then_some(entry.as_str());
            documents.extend(yaml::parse_objects(&text, &source)?.into_iter().map(|d| (configured_in, d)));
        }
        Ok(documents)
    }

    /// `configMapGenerator`, `secretGenerator` and `generators:` entries configuring builtin
    /// generators, with their `behavior` (create, merge, replace).
    pub(super) fn generate(&mut self, dir: &Path, file: &Path, k: &Kustomization, resources: &mut Vec<Resource>) -> Result<(), Error> {
        let by_field = |kind: &str| self.configured(file, None, metadata::ConfiguredBy::builtin(kind));
        let mut generators: Vec<(generator::GeneratedKind, file::Generator, Option<metadata::Origin>)> = k
            .config_map_generator
            .iter()
            .map(|g| (generator::GeneratedKind::ConfigMap, g.clone(), by_field("ConfigMapGenerator")))
            .chain(k.secret_generator.iter().map(|g| (generator::GeneratedKind::Secret, g.clone(), by_field("SecretGenerator"))))
            .collect();
        // `generators:` configuring builtin generators run after the fields, as in kustomize.
        for (configured_in, document) in self.plugin_documents(dir, file, &k.generators)? {
            let (kind, spec) = builtin::generator(&document).map_err(|message| Error::Plugin { file: file.to_owned(), message })?;
            generators.push((kind, spec, self.configured(file, configured_in, metadata::ConfiguredBy::of_document(&document))));
        }
        for (kind, spec, origin) in &generators {
            let kind = *kind;
            let error = |message: String| Error::Generator { file: file.to_owned(), message };
            let mut read = |relative: &str| -> Result<Vec<u8>, String> {
                let (path, bytes) = self.read(dir, relative).map_err(|e| e.to_string())?;
                match secret_source_use(kind, spec, relative) {
                    Some(usage) => self.filtered(&path, usage, bytes).map_err(|e| e.to_string()),
                    None => Ok(bytes),
                }
            };
            let collected = generator::collect(spec, &mut read).map_err(error)?;
            let (object, needs_hash) = generator::object(kind, spec, k.generator_options.as_ref(), collected);
            let id = Id::of(&object);
            let existing = resources.iter().position(|r| r.matches_any_id(&id));
            // kustomize reads a behavior it does not know (`add`) as unspecified, which creates.
            let behavior = spec.behavior.as_deref().filter(|b| matches!(*b, "merge" | "replace")).unwrap_or("create");
            match (behavior, existing) {
                ("create", None) => {
                    let mut resource = Resource::new(object);
                    resource.needs_hash = needs_hash;
                    resource.origin.clone_from(origin);
                    resources.push(resource);
                }
                ("create", Some(_)) => return Err(error(format!("id {id} exists; behavior must be merge or replace"))),
                ("merge", Some(i)) => {
                    let target = &mut resources[i];
                    merge_generated(&mut target.object, &object);
                    target.needs_hash = target.needs_hash && needs_hash;
                }
                // replace
                (_, Some(i)) => {
                    let target = &mut resources[i];
                    let name = object::name(&target.object).to_owned();
                    let namespace = object::namespace(&target.object).to_owned();
                    // The replaced object's labels and annotations stay under the new ones'
                    // (kustomize's CopyMergeMetaDataFieldsFrom).
                    let mut object = object;
                    for field in ["labels", "annotations"] {
                        let Some(old) = target.object.pointer(&format!("/metadata/{field}")).and_then(Value::as_object).filter(|m| !m.is_empty()) else {
                            continue;
                        };
                        let mut merged = old.clone();
                        if let Some(new) = object.pointer(&format!("/metadata/{field}")).and_then(Value::as_object) {
                            merged.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
                        }
                        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                            metadata.insert(field.into(), Value::Object(merged));
                        }
                    }
                    target.object = object;
                    object::set_metadata(&mut target.object, "name", &name);
                    if !namespace.is_empty() {
                        object::set_metadata(&mut target.object, "namespace", &namespace);
                    }
                    // Hashed only when both were (a replaced plain object keeps its name), as
                    // kustomize keeps the old resource's options; the origin is the new one's.
                    target.needs_hash = target.needs_hash && needs_hash;
                    target.origin.clone_from(origin);
                }
                // merge or replace
                (_, None) => return Err(error(format!("id {id} does not exist; cannot merge or replace"))),
            }
        }
        Ok(())
    }
}

/// What a file a generator reads is for, when a [`FileFilter`] should see it: only Secrets'.
fn secret_source_use<'a>(kind: generator::GeneratedKind, spec: &'a file::Generator, relative: &str) -> Option<FileUse<'a>> {
    if kind != generator::GeneratedKind::Secret {
        return None;
    }
    if spec.env.iter().chain(&spec.envs).any(|e| e == relative) {
        return Some(FileUse::SecretEnv);
    }
    spec.files.iter().find_map(|source| match source.split_once('=') {
        Some((key, path)) if path == relative => Some(FileUse::SecretFile { key }),
        None if source == relative => Some(FileUse::SecretFile { key: source }),
        _ => None,
    })
}

/// `behavior: merge`: the generated data and metadata go over the existing object's.
fn merge_generated(existing: &mut Value, generated: &Value) {
    for field in ["data", "binaryData"] {
        if let Some(new) = generated.get(field).and_then(Value::as_object)
            && let Some(map) = existing.as_object_mut()
        {
            let entry = map.entry(field).or_insert_with(|| Value::Object(Default::default()));
            if let Some(entry) = entry.as_object_mut() {
                entry.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    for field in ["labels", "annotations"] {
        if let Some(new) = generated.pointer(&format!("/metadata/{field}")).and_then(Value::as_object)
            && let Some(metadata) = existing.get_mut("metadata").and_then(Value::as_object_mut)
        {
            let entry = metadata.entry(field).or_insert_with(|| Value::Object(Default::default()));
            if let Some(entry) = entry.as_object_mut() {
                entry.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    if let Some(immutable) = generated.get("immutable") {
        existing["immutable"] = immutable.clone();
    }
}
