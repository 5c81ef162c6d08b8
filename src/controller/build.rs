//! The Flux side of a build: a Kustomization's spec (targetNamespace, namePrefix/nameSuffix,
//! patches, images, components, the v1beta2 patch lists) merged into the kustomization at
//! `spec.path`, or into the one Flux generates where the path has none; then `commonMetadata`.

use std::collections::BTreeMap;
use std::path::Path;

use kube::ResourceExt;
use serde_json::Value;

use crate::api::kustomize::v1::{Kustomization, KustomizationSpec};
use crate::api::kustomize::{Image, NAME_LABEL, NAMESPACE_LABEL, Patch, Selector};
use crate::kustomize::{self, BuildOptions, Overlay, file};

fn selector(s: &Selector) -> file::Selector {
    file::Selector {
        group: s.group.clone(),
        version: s.version.clone(),
        kind: s.kind.clone(),
        name: s.name.clone(),
        namespace: s.namespace.clone(),
        label_selector: s.label_selector.clone(),
        annotation_selector: s.annotation_selector.clone(),
    }
}

fn patch(p: &Patch) -> file::Patch {
    file::Patch { path: None, patch: Some(p.patch.clone()), target: p.target.as_ref().map(selector), options: None }
}

fn image(i: &Image) -> file::Image {
    file::Image { name: i.name.clone(), new_name: i.new_name.clone(), new_tag: i.new_tag.clone(), digest: i.digest.clone(), tag_suffix: None }
}

/// What the spec adds to the root kustomization.
pub fn overlay(spec: &KustomizationSpec) -> Overlay {
    Overlay {
        namespace: spec.target_namespace.clone(),
        name_prefix: spec.name_prefix.clone(),
        name_suffix: spec.name_suffix.clone(),
        patches: spec.patches.iter().flatten().map(patch).collect(),
        patches_strategic_merge: spec.patches_strategic_merge.clone().unwrap_or_default(),
        patches_json6902: spec
            .patches_json6902
            .iter()
            .flatten()
            .map(|p| file::Patch {
                path: None,
                patch: Some(serde_json::to_string(&p.patch).unwrap_or_default()),
                target: Some(selector(&p.target)),
                options: None,
            })
            .collect(),
        images: spec.images.iter().flatten().map(image).collect(),
        components: spec.components.clone().unwrap_or_default(),
    }
}

/// Builds `dir` (inside the artifact `root`) with the spec's settings. As in Flux, files may be
/// read from anywhere inside the artifact (not only below each kustomization's folder), and
/// nothing outside it.
pub fn build(root: &Path, dir: &Path, spec: &KustomizationSpec) -> Result<Vec<Value>, kustomize::Error> {
    build_with(root, dir, spec, false)
}

/// [`build`], with remote (URL) bases allowed or not.
pub fn build_with(root: &Path, dir: &Path, spec: &KustomizationSpec, enable_remote: bool) -> Result<Vec<Value>, kustomize::Error> {
    let options = BuildOptions { enable_remote, overlay: overlay(spec) };
    let mut objects = if kustomize::has_kustomization(dir) {
        kustomize::build_with_restrictions(root, dir, &options, kustomize::LoadRestrictions::BuildRoot)?
    } else {
        kustomize::build_generated(root, dir, &options)?
    };
    if let Some(common) = &spec.common_metadata {
        kustomize::add_common_metadata(
            &mut objects,
            &common.labels.clone().unwrap_or_default(),
            &common.annotations.clone().unwrap_or_default(),
        );
    }
    Ok(objects)
}

/// The owner labels Flux puts on every object of a Kustomization (the controller when applying,
/// the CLI when building and diffing).
pub fn owner_labels(ks: &Kustomization) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_owned(), ks.name_any()),
        (NAMESPACE_LABEL.to_owned(), ks.namespace().unwrap_or_default()),
    ])
}

/// Sets `labels` on every object.
pub fn add_labels(objects: Vec<Value>, labels: &BTreeMap<String, String>) -> Vec<Value> {
    objects
        .into_iter()
        .map(|mut object| {
            if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                let entry = meta.entry("labels").or_insert_with(|| Value::Object(Default::default()));
                if let Some(map) = entry.as_object_mut() {
                    for (k, v) in labels {
                        map.insert(k.clone(), Value::String(v.clone()));
                    }
                }
            }
            object
        })
        .collect()
}
