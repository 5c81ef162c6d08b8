//! A native kustomize (`kubectl kustomize`, kustomize v5) in Rust, self-contained so that it can
//! become its own crate: `build(root, dir, options)` reads the kustomization in `dir` and returns
//! the objects in kustomize's order; nothing outside `root` is ever read.
//!
//! A kustomization is built as kustomize does: its `resources` (files, and directories with
//! their own kustomization, built first) are accumulated, its generators add ConfigMaps and
//! Secrets, its `components` apply, and then its transformers run in kustomize's order (strategic
//! merge patches, `patches`, namespace, prefix, suffix, labels, annotations, JSON 6902 patches,
//! replicas, images, replacements). At the end of the whole build, generated objects get their
//! content hash and every reference to a renamed object is pointed at its new name.
//!
//! Also: `vars`, `configurations` (custom field specs), `crds` (name references of custom
//! kinds), `openapi` (a custom schema for strategic merges), `buildMetadata`, `sortOptions`,
//! `replacements`, `transformers:`/`generators:` entries that configure kustomize's builtin
//! plugins, and remote git bases and components when [`BuildOptions::enable_remote`] is set
//! (each clone is the build root of its base). Refused by name, with an error: Helm, external
//! plugins, KRM functions and validators (out of scope), single files over HTTP, and remote
//! bases when not enabled.

mod accumulate;
mod builtin;
mod config;
mod error;
pub mod fieldspec;
pub mod file;
pub mod generator;
// Public for the fuzz targets (fuzz/), which drive them as a build does.
pub mod json6902;
pub mod limits;
mod loader;
mod metadata;
mod nameref;
pub mod object;
mod openapi;
mod order;
pub mod patch;
mod pipeline;
mod regex;
mod remote;
mod replacement;
mod select;
#[cfg(test)]
pub(crate) mod testing;
mod transform;
mod vars;
mod yaml;

use std::path::{Path, PathBuf};

pub use error::Error;
pub use file::Kustomization;
pub use loader::{FileFilter, FileUse, LoadRestrictions, has_kustomization, load};
pub use object::{Id, Object};
pub use yaml::{parse_objects, to_yaml};

use object::Resource;

/// Settings of a build beyond the kustomization files.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Allow remote git bases and components (cloned into a temporary folder for the build).
    pub enable_remote: bool,
}

struct Builder<'a> {
    root: PathBuf,
    options: &'a BuildOptions,
    /// Sees resource, patch and secretGenerator files as they are read (SOPS decryption).
    file_filter: Option<&'a dyn FileFilter>,
    restrictions: LoadRestrictions,
    stack: Vec<PathBuf>,
    /// The `vars` of every kustomization of the build, resolved at the end.
    vars: Vec<vars::Var>,
    /// The field specs of every kustomization's `configurations` and `crds` so far.
    config: config::TransformerConfig,
    /// The name prefix and suffix field specs of the kustomization being accumulated, merged as
    /// kustomize merges them: its bases' (not its siblings'), then its own and the builtin ones.
    name_specs: config::NameSpecs,
    /// Those of the kustomization built last, for its parent to merge.
    built_name_specs: config::NameSpecs,
    /// The schema of strategic merges, decided once for the whole build as kustomize does: by
    /// the first `openapi: {path: …}` met before the first strategic merge (`None`: builtin).
    schema: std::cell::OnceCell<Option<openapi::OpenApi>>,
    /// Whether origins and transformations are recorded (the root lists `buildMetadata`).
    track_origins: bool,
    /// Where each kustomization being built is, for origins: the current one last.
    locations: Vec<metadata::Location>,
}

/// Builds the kustomization in `dir` as `kubectl kustomize` does; nothing outside `root` is
/// read, and each kustomization reads files only in or below its folder.
pub fn build(root: &Path, dir: &Path, options: &BuildOptions) -> Result<Vec<Object>, Error> {
    build_with_restrictions(root, dir, options, LoadRestrictions::KustomizationFolder)
}

/// [`build`] with a choice of load restrictions (Flux builds with [`LoadRestrictions::BuildRoot`]).
pub fn build_with_restrictions(root: &Path, dir: &Path, options: &BuildOptions, restrictions: LoadRestrictions) -> Result<Vec<Object>, Error> {
    let _budget = limits::Budget::install();
    let (mut builder, dir) = Builder::start(root, dir, options, restrictions)?;
    let (file, kustomization) = builder.load(&dir)?;
    builder.build_root(&dir, &file, kustomization)
}

/// Reads the kustomization file of a folder inside the build root, refusing one that leads out
/// of the root (a symlink) before anything of it is read or quoted.
pub type RootLoader<'a> = &'a dyn Fn(&Path) -> Result<(PathBuf, Kustomization), Error>;

/// Builds `dir` from the root kustomization `root_kustomization` gives for it (its file and
/// content), called with `dir` canonical and checked to be inside `root`, and with the build's
/// own loader for reading kustomization files safely: for callers that edit the root
/// kustomization before the build or generate one (Flux's controller).
pub fn build_kustomization(
    root: &Path,
    dir: &Path,
    options: &BuildOptions,
    restrictions: LoadRestrictions,
    root_kustomization: impl FnOnce(&Path, RootLoader) -> Result<(PathBuf, Kustomization), Error>,
) -> Result<Vec<Object>, Error> {
    build_kustomization_filtered(root, dir, options, restrictions, root_kustomization, None)
}

/// [`build_kustomization`], with `file_filter` seeing every resource, patch and secretGenerator
/// file the build reads (the controller decrypts SOPS files there).
pub fn build_kustomization_filtered(
    root: &Path,
    dir: &Path,
    options: &BuildOptions,
    restrictions: LoadRestrictions,
    root_kustomization: impl FnOnce(&Path, RootLoader) -> Result<(PathBuf, Kustomization), Error>,
    file_filter: Option<&dyn FileFilter>,
) -> Result<Vec<Object>, Error> {
    let _budget = limits::Budget::install();
    let (mut builder, dir) = Builder::start(root, dir, options, restrictions)?;
    builder.file_filter = file_filter;
    let (file, kustomization) = {
        let loader = |d: &Path| builder.load(d);
        root_kustomization(&dir, &loader)?
    };
    builder.build_root(&dir, &file, kustomization)
}

impl Builder<'_> {
    fn start<'a>(root: &Path, dir: &Path, options: &'a BuildOptions, restrictions: LoadRestrictions) -> Result<(Builder<'a>, PathBuf), Error> {
        let root = root.canonicalize().map_err(|source| Error::Io { path: root.to_owned(), source })?;
        let builder = Builder {
            root,
            options,
            file_filter: None,
            restrictions,
            stack: Vec::new(),
            vars: Vec::new(),
            config: config::TransformerConfig::default(),
            name_specs: config::NameSpecs::default(),
            built_name_specs: config::NameSpecs::default(),
            schema: std::cell::OnceCell::new(),
            track_origins: false,
            locations: vec![metadata::Location::default()],
        };
        let dir = builder.inside_root(dir)?;
        Ok((builder, dir))
    }

    fn build_root(&mut self, dir: &Path, file: &Path, kustomization: Kustomization) -> Result<Vec<Object>, Error> {
        let sort_options = kustomization.sort_options.clone();
        let build_metadata = metadata::BuildMetadata::from_options(&kustomization.build_metadata);
        self.track_origins = metadata::BuildMetadata::tracks_origins(&kustomization.build_metadata);
        let mut resources = self.build_kustomization(dir, file, kustomization)?;
        // Hashes come last, over the final data, and then the references follow the new names.
        for resource in resources.iter_mut().filter(|r| r.needs_hash) {
            let hash = generator::content_hash(&resource.object);
            let new_name = format!("{}-{hash}", object::name(&resource.object));
            resource.rename(&new_name);
        }
        nameref::fix_references(&mut resources, &self.config.name_reference).map_err(|message| Error::NameReference { file: file.to_owned(), message })?;
        let unused = vars::resolve(&self.vars, &mut resources, &self.config.var_reference).map_err(|message| Error::Vars { file: file.to_owned(), message })?;
        if !unused.is_empty() {
            tracing::info!(vars = ?unused, "well-defined vars that were never replaced");
        }
        // Objects marked `config.kubernetes.io/local-config` (any value but "false") take part
        // in the whole build (a replacement's source) and are dropped from its output.
        resources.retain(|r| {
            r.object.get("metadata").and_then(|m| m.get("annotations")).and_then(|a| a.get("config.kubernetes.io/local-config")).is_none_or(|v| v == "false")
        });
        if build_metadata != metadata::BuildMetadata::default() {
            for resource in &mut resources {
                metadata::annotate(&mut resource.object, build_metadata, resource.origin.as_ref(), &resource.transformations);
            }
        }
        let mut objects: Vec<Object> = resources.into_iter().map(|r| r.object).collect();
        objects.iter_mut().for_each(object::drop_empty_annotations);
        order::sort(&mut objects, sort_options.as_ref()).map_err(|message| Error::SortOptions { file: file.to_owned(), message })?;
        Ok(objects)
    }

    /// Where the kustomization being built is.
    pub(super) fn location(&self) -> metadata::Location {
        self.locations.last().cloned().unwrap_or_default()
    }

    /// The origin of what a kustomization (`file`) or a file it names (`entry`) configured.
    pub(super) fn configured(&self, file: &Path, entry: Option<&str>, by: metadata::ConfiguredBy) -> Option<metadata::Origin> {
        if !self.track_origins {
            return None;
        }
        let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Some(metadata::Origin::configured(&self.location().join(entry.unwrap_or(&file_name)), by))
    }

    /// Records that a transformer ran over every resource (kustomize records it whether or not
    /// the transformer changed the resource).
    pub(super) fn record(&self, resources: &mut [Resource], file: &Path, entry: Option<&str>, by: metadata::ConfiguredBy) {
        if let Some(origin) = self.configured(file, entry, by) {
            for resource in resources {
                resource.transformations.push(origin.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{CONFIG_MAP, tree};
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn out_of_scope_fields_and_remote_resources_are_refused_by_name() {
        for (field, text) in [
            ("external plugin", "transformers:\n- |\n  apiVersion: example.com/v1\n  kind: Sed\n  metadata: {name: x}\n"),
            ("external plugin", "generators:\n- |\n  apiVersion: example.com/v1\n  kind: Gen\n  metadata: {name: x}\n"),
            ("helmCharts", "helmCharts: [{name: x}]\n"),
            ("validators", "validators: [v.yaml]\n"),
        ] {
            let dir = tree(&[("kustomization.yaml", text)]);
            let error = build(dir.path(), dir.path(), &BuildOptions::default()).expect_err("refused");
            assert!(error.to_string().contains(field), "{error}");
        }
        let dir = tree(&[("kustomization.yaml", "resources: [github.com/org/repo//x?ref=v1]\n")]);
        let error = build(dir.path(), dir.path(), &BuildOptions::default()).expect_err("refused");
        assert!(error.to_string().contains("not enabled"), "{error}");
        let dir = tree(&[("kustomization.yaml", "resources: [https://example.com/manifests/app.yaml]\n")]);
        let error = build(dir.path(), dir.path(), &BuildOptions { enable_remote: true }).expect_err("refused");
        assert!(error.to_string().contains("single files over HTTP"), "{error}");
    }

    #[test]
    fn unknown_fields_and_bad_yaml_name_the_field_and_line() {
        let dir = tree(&[("kustomization.yaml", "resources: []\nnamePrefx: a-\n")]);
        let error = build(dir.path(), dir.path(), &BuildOptions::default()).expect_err("unknown field").to_string();
        assert!(error.contains("namePrefx") && error.contains("line 2"), "{error}");
        let dir = tree(&[("kustomization.yaml", "resources: [a.yaml]\n"), ("a.yaml", "kind: ConfigMap\nmetadata:\n  name: [x\n")]);
        let error = build(dir.path(), dir.path(), &BuildOptions::default()).expect_err("bad yaml").to_string();
        assert!(error.contains("a.yaml") && error.contains("line"), "{error}");
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let outside = tree(&[("secret.yaml", CONFIG_MAP)]);
        let dir = tree(&[("kustomization.yaml", "resources: [link.yaml]\n")]);
        std::os::unix::fs::symlink(outside.path().join("secret.yaml"), dir.path().join("link.yaml")).expect("symlink");
        let error = build(dir.path(), dir.path(), &BuildOptions::default()).expect_err("escapes").to_string();
        assert!(error.contains("is not in or below"), "{error}");
    }

    #[test]
    fn load_refuses_a_kustomization_file_linking_out_of_its_folder_unread() {
        let outside = tree(&[("passwd", "root:x:0:0:root:/root:/bin/bash\n")]);
        let dir = tree(&[]);
        std::os::unix::fs::symlink(outside.path().join("passwd"), dir.path().join("kustomization.yaml")).expect("symlink");
        let error = load(dir.path()).expect_err("escapes").to_string();
        assert!(error.contains("is not in or below") && !error.contains("root:x"), "{error}");
        // A link to a file next to it is read.
        let dir = tree(&[("real.yaml", "resources: []\n")]);
        std::os::unix::fs::symlink(dir.path().join("real.yaml"), dir.path().join("kustomization.yaml")).expect("symlink");
        let (file, _) = load(dir.path()).expect("loads");
        assert!(file.ends_with("kustomization.yaml"));
    }

    #[test]
    fn flux_load_restrictions_allow_files_elsewhere_in_the_root() {
        let dir = tree(&[("shared/cm.yaml", CONFIG_MAP), ("app/kustomization.yaml", "resources: [../shared/cm.yaml]\n")]);
        let app = dir.path().join("app");
        assert!(build(dir.path(), &app, &BuildOptions::default()).is_err());
        let objects = build_with_restrictions(dir.path(), &app, &BuildOptions::default(), LoadRestrictions::BuildRoot).expect("builds");
        assert_eq!(objects.len(), 1);
    }

    /// Strings that YAML could misread if they were not quoted.
    const TRICKY: &[&str] = &[
        "yes",
        "no",
        "on",
        "0777",
        "1e3",
        "~",
        "null",
        "true",
        "- a",
        "a: b",
        "#x",
        "",
        " lead",
        "multi\nline\n",
        "'q'",
        "\"dq\"",
        "@at",
        "*star",
        "0x1F",
        "1.0",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        #[test]
        fn property_yaml_output_parses_back_to_the_same_objects(values in proptest::collection::vec(yaml_value(), 0..6)) {
            let data: serde_json::Map<String, Value> = values.into_iter().enumerate().map(|(i, v)| (format!("k{i}"), v)).collect();
            let objects = vec![
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": data}),
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "y"}}),
            ];
            let text = to_yaml(&objects);
            let parsed = parse_objects(&text, Path::new("round-trip")).expect("parses");
            proptest::prop_assert_eq!(parsed, objects, "{}", text);
        }
    }

    /// A tricky string, a number, a boolean, or a list of a tricky string and a null.
    fn yaml_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        use proptest::sample::select;
        prop_oneof![
            select(TRICKY).prop_map(Value::from),
            (0..100_000u64).prop_map(Value::from),
            any::<bool>().prop_map(Value::Bool),
            select(TRICKY).prop_map(|s| Value::Array(vec![Value::from(s), Value::Null])),
        ]
    }
}
