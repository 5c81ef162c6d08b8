//! What ferroflux last applied, and the one-LIST-per-kind check that finds objects neither Git
//! nor the cluster changed since, so a no-op reconcile skips their dry-run and apply.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::{Applier, ApplyError, ApplyOptions, ObjectId, Resolved};

/// What ferroflux last applied, per object: the digest of the manifest and the resourceVersion
/// the object had afterwards. An object whose manifest digest and live resourceVersion both
/// match needs no dry-run and no apply: neither Git nor anyone in the cluster changed it. The
/// live resourceVersions come from one metadata LIST per kind and namespace, so a no-op
/// reconcile costs a handful of requests, not one per object, while `kubectl edit` (which
/// changes the resourceVersion) is still corrected.
#[derive(Clone, Debug, Default)]
pub struct AppliedState {
    pub(super) entries: HashMap<ObjectId, (String, String)>,
}

impl AppliedState {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The resourceVersion `id` had right after ferroflux last applied (or checked) it: a watch
    /// event carrying it is our own write.
    pub fn resource_version(&self, id: &ObjectId) -> Option<&str> {
        self.entries.get(id).map(|(_, version)| version.as_str())
    }
}

pub(super) fn manifest_digest(object: &Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(serde_json::to_vec(object).unwrap_or_default()))
}

impl Applier {
    /// The objects of `stage` that neither Git nor the cluster changed since `previous` was
    /// recorded, found with one metadata LIST per kind and namespace.
    pub(super) async fn unchanged_since(
        &self,
        stage: &[Resolved],
        digests: &[String],
        previous: &AppliedState,
        opts: &ApplyOptions,
    ) -> Result<HashMap<ObjectId, String>, ApplyError> {
        let mut groups: BTreeMap<(String, String), (&Resolved, Vec<usize>)> = BTreeMap::new();
        for (i, r) in stage.iter().enumerate() {
            if previous.entries.get(&r.id).is_some_and(|(digest, _)| *digest == digests[i]) {
                let key = (format!("{}/{}/{}", r.resource.group, r.resource.version, r.resource.plural), r.id.namespace.clone());
                groups.entry(key).or_insert((r, Vec::new())).1.push(i);
            }
        }
        let selector = opts.owner_labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let mut unchanged = HashMap::new();
        for ((_, _), (sample, members)) in groups {
            let params = kube::api::ListParams { label_selector: (!selector.is_empty()).then(|| selector.clone()), ..Default::default() };
            let listed = self
                .api(sample)
                .list_metadata(&params)
                .await
                .map_err(|e| ApplyError::Api { context: format!("listing {} in {}", sample.resource.plural, sample.id.namespace), source: e })?;
            let live: HashMap<String, String> = listed.items.into_iter().filter_map(|o| Some((o.metadata.name?, o.metadata.resource_version?))).collect();
            for i in members {
                let r = &stage[i];
                if let (Some((_, recorded)), Some(current)) = (previous.entries.get(&r.id), live.get(&r.id.name)) {
                    if recorded == current {
                        unchanged.insert(r.id.clone(), current.clone());
                    }
                }
            }
        }
        Ok(unchanged)
    }
}
