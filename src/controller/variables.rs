//! `postBuild`'s variables, read from the cluster: `substituteFrom` ConfigMaps and Secrets in
//! order (a later one wins), then `substitute`, which wins over all of them, as in Flux. The
//! controller reads them with the Kustomization's (impersonated) client, so a ServiceAccount only
//! sees what it may read; `ferroflux build ks` with the caller's.
//!
//! The values that came from Secrets are remembered, so that no message a render or an apply
//! produces (a YAML error after substitution, the API server's dry-run refusal quoting a field)
//! carries them into status, events or the CLI's output.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;

use crate::api::kustomize::{PostBuild, SubstituteKind};

/// What replaces a Secret's value in messages, as Flux masks Secret data.
pub const MASK: &str = "***";

#[derive(Debug, thiserror::Error)]
#[error("substitute from '{kind}/{name}' failed: {why}")]
pub struct VariablesError {
    pub kind: &'static str,
    pub name: String,
    pub why: String,
}

/// The variables of one render, and which of their values are secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables {
    pub values: BTreeMap<String, String>,
    /// Values read from Secrets: masked in every message.
    secret_values: Vec<String>,
}

impl Variables {
    /// Variables that hold no secrets (`postBuild.substitute` alone, tests).
    pub fn plain(values: BTreeMap<String, String>) -> Self {
        Variables { values, secret_values: Vec::new() }
    }

    fn add_secret(&mut self, key: String, value: String) {
        if !value.is_empty() && !self.secret_values.contains(&value) {
            self.secret_values.push(value.clone());
        }
        self.values.insert(key, value);
    }

    /// `text` with every secret value replaced by [`MASK`]; the longest values first, so that a
    /// value containing another is masked whole.
    pub fn mask(&self, text: &str) -> String {
        if self.secret_values.is_empty() {
            return text.to_owned();
        }
        let mut secrets: Vec<&String> = self.secret_values.iter().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut masked = text.to_owned();
        for secret in secrets {
            if masked.contains(secret.as_str()) {
                masked = masked.replace(secret.as_str(), MASK);
            }
        }
        masked
    }
}

/// Reads `post_build`'s variables in `namespace` with `client`.
pub async fn substitution_vars(client: &kube::Client, namespace: &str, post_build: &PostBuild) -> Result<Variables, VariablesError> {
    let mut vars = Variables::default();
    for reference in post_build.substitute_from.iter().flatten() {
        let optional = reference.optional == Some(true);
        let failed = |kind: &'static str, why: String| VariablesError { kind, name: reference.name.clone(), why };
        match reference.kind {
            SubstituteKind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
                match api.get_opt(&reference.name).await.map_err(|e| failed("ConfigMap", e.to_string()))? {
                    Some(map) => vars.values.extend(map.data.unwrap_or_default()),
                    None if optional => {}
                    None => return Err(failed("ConfigMap", format!("configmaps \"{}\" not found", reference.name))),
                }
            }
            SubstituteKind::Secret => {
                let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                match api.get_opt(&reference.name).await.map_err(|e| failed("Secret", e.to_string()))? {
                    Some(secret) => {
                        for (key, value) in secret.data.unwrap_or_default() {
                            // The key is named, never the content.
                            let text = String::from_utf8(value.0).map_err(|_| failed("Secret", format!("key '{key}' is not UTF-8 text")))?;
                            vars.add_secret(key, text);
                        }
                        for (key, value) in secret.string_data.unwrap_or_default() {
                            vars.add_secret(key, value);
                        }
                    }
                    None if optional => {}
                    None => return Err(failed("Secret", format!("secrets \"{}\" not found", reference.name))),
                }
            }
        }
    }
    vars.values.extend(post_build.substitute.clone().unwrap_or_default());
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_masked_longest_first_and_plain_ones_kept() {
        let mut vars = Variables::plain(BTreeMap::from([("region".to_owned(), "eu-1".to_owned())]));
        vars.add_secret("password".into(), "hunter2".into());
        vars.add_secret("token".into(), "hunter2-extended".into());
        vars.add_secret("empty".into(), String::new());
        assert_eq!(vars.mask("bad value \"hunter2-extended\" and hunter2 in eu-1"), "bad value \"***\" and *** in eu-1");
        assert_eq!(vars.values.len(), 4);
        assert_eq!(Variables::default().mask("nothing to hide"), "nothing to hide");
    }
}
