//! Where a Kustomization's SOPS keys come from, as in Flux: the Secret `spec.decryption.secretRef`
//! names in the Kustomization's namespace (read with the Kustomization's own, possibly
//! impersonated, client), or else the controller's `--sops-age-secret`. Entries ending in
//! `.agekey` hold age identities, `.asc` armored OpenPGP private keys; Flux's KMS and Vault
//! entries are refused by name until ferroflux supports them. The only part of `sops` that talks
//! to Kubernetes.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

use super::{Decryptor, Error, Keys};
use crate::api::kustomize::v1::Kustomization;

/// Flux's entries for cloud KMS and Vault credentials.
const UNSUPPORTED_ENTRIES: &[&str] = &["sops.aws-kms", "sops.azure-kv", "sops.gcp-kms", "sops.vault-token"];

/// A Secret in the controller's namespace (`--sops-age-secret`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretName {
    pub namespace: String,
    pub name: String,
}

/// The decryptor for a Kustomization: `None` when it sets no `spec.decryption`.
/// `client` reads the Kustomization's Secret (its ServiceAccount's rights), `controller` the
/// global one.
pub async fn decryptor_for(ks: &Kustomization, client: &Client, controller: &Client, global: Option<&SecretName>) -> Result<Option<Decryptor>, Error> {
    let Some(decryption) = &ks.spec.decryption else { return Ok(None) };
    let mut keys = Keys::default();
    match (&decryption.secret_ref, global) {
        (Some(reference), _) => {
            let namespace = ks.namespace().unwrap_or_default();
            let secret = read(client, &namespace, &reference.name).await?;
            import(&mut keys, &secret, &format!("{namespace}/{}", reference.name), true)?;
        }
        (None, Some(global)) => {
            let secret = read(controller, &global.namespace, &global.name).await?;
            import(&mut keys, &secret, &format!("{}/{}", global.namespace, global.name), false)?;
        }
        (None, None) => {}
    }
    Ok(Some(Decryptor::new(keys)))
}

async fn read(client: &Client, namespace: &str, name: &str) -> Result<Secret, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = format!("{namespace}/{name}");
    api.get_opt(name)
        .await
        .map_err(|e| Error::KeySecret { secret: secret.clone(), message: e.to_string() })?
        .ok_or(Error::KeySecret { secret, message: "not found".into() })
}

/// Imports a Secret's key entries; `all_kinds` is false for the global Secret, which holds only
/// age keys in Flux.
pub fn import(keys: &mut Keys, secret: &Secret, secret_name: &str, all_kinds: bool) -> Result<(), Error> {
    for (entry, value) in secret.data.iter().flatten() {
        let failed = |message: String| Error::KeyEntry { secret: secret_name.to_owned(), entry: entry.clone(), message };
        if entry.ends_with(".agekey") {
            let text = std::str::from_utf8(&value.0).map_err(|_| failed("not UTF-8 text".into()))?;
            keys.add_age_identities(text).map_err(|e| failed(e.to_string()))?;
        } else if all_kinds && entry.ends_with(".asc") {
            let text = std::str::from_utf8(&value.0).map_err(|_| failed("not UTF-8 text".into()))?;
            keys.add_pgp_keys(text).map_err(|e| failed(e.to_string()))?;
        } else if all_kinds && UNSUPPORTED_ENTRIES.contains(&entry.as_str()) {
            return Err(failed("KMS and Vault credentials are not supported by ferroflux yet; use age or OpenPGP keys".into()));
        }
    }
    Ok(())
}
