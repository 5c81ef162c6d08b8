//! The Flux side of a build: a Kustomization's spec (targetNamespace, namePrefix/nameSuffix,
//! patches, images, components, the v1beta2 patch lists) merged into the kustomization at
//! `spec.path`, or into the one Flux generates where the path has none; then `commonMetadata`.

use std::path::Path;

use serde_json::Value;

use crate::api::kustomize::v1::KustomizationSpec;
use crate::api::kustomize::{Image, Patch, Selector};
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

/// Builds `dir` (inside the artifact `root`) with the spec's settings.
pub fn build(root: &Path, dir: &Path, spec: &KustomizationSpec) -> Result<Vec<Value>, kustomize::Error> {
    let options = BuildOptions { enable_remote: false, overlay: overlay(spec) };
    let mut objects = if kustomize::has_kustomization(dir) {
        kustomize::build(root, dir, &options)?
    } else {
        kustomize::build_generated(root, dir, &options)?
    };
    if let Some(common) = &spec.common_metadata {
        for object in &mut objects {
            let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else { continue };
            for (field, pairs) in [("labels", &common.labels), ("annotations", &common.annotations)] {
                let Some(pairs) = pairs else { continue };
                let entry = metadata.entry(field).or_insert_with(|| Value::Object(Default::default()));
                if let Some(map) = entry.as_object_mut() {
                    for (k, v) in pairs {
                        map.insert(k.clone(), Value::String(v.clone()));
                    }
                }
            }
        }
    }
    Ok(objects)
}
