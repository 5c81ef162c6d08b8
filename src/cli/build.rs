//! `ferroflux build ks NAME --path DIR`: build a local directory as the Kustomization NAME in the
//! cluster would build it (its targetNamespace, prefix, patches, images, components,
//! commonMetadata, `postBuild.substitute` and `substituteFrom`, Flux's owner labels) and print
//! the objects.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use kube::Client;
use serde_json::Value;

use super::status::FluxKind;
use super::{CliError, ClusterArgs};
use crate::api::Kustomization;
use crate::controller::render::{self, RenderOptions};
use crate::controller::variables::{self, Variables};

#[derive(Subcommand, Debug)]
pub enum BuildTarget {
    /// Build DIR with the settings of the Kustomization NAME.
    #[command(alias = "ks", alias = "kustomizations")]
    Kustomization(LocalBuild),
}

/// A Kustomization in the cluster and the local directory to build in its place.
#[derive(clap::Args, Debug, Clone)]
pub struct LocalBuild {
    /// The Kustomization's name.
    pub name: String,
    /// The local directory to build, in place of the Kustomization's `spec.path` in its source.
    #[arg(long)]
    pub path: PathBuf,
    /// Files may be read from anywhere inside this folder, as the controller reads anywhere inside
    /// the source artifact (default: the Git work tree holding --path, else --path itself).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Allow remote (Git URL) bases and components, as the controller does unless it runs with
    /// `--no-remote-bases`; without it they are refused, so a build reads only local files.
    #[arg(long)]
    pub enable_remote: bool,
    /// Decrypt SOPS files with the keys of the Kustomization's spec.decryption Secret, read from
    /// the cluster with your rights.
    #[arg(long)]
    pub decrypt: bool,
    /// Decrypt SOPS files with this key file (`*.agekey`: age identities, `*.asc`: an armored
    /// OpenPGP private key); may be repeated.
    #[arg(long = "sops-key", value_name = "FILE")]
    pub sops_keys: Vec<PathBuf>,
}

/// The decryptor `--decrypt` and `--sops-key` ask for, if any.
async fn decryptor(client: &Client, ks: &Kustomization, local: &LocalBuild) -> Result<Option<crate::sops::Decryptor>, CliError> {
    if !local.decrypt && local.sops_keys.is_empty() {
        return Ok(None);
    }
    let mut keys = crate::sops::Keys::default();
    for file in &local.sops_keys {
        let text = std::fs::read_to_string(file).map_err(|e| CliError::Usage(format!("--sops-key {}: {e}", file.display())))?;
        let added = if file.to_string_lossy().ends_with(".asc") { keys.add_pgp_keys(&text) } else { keys.add_age_identities(&text) };
        added.map_err(|e| CliError::Usage(format!("--sops-key {}: {e}", file.display())))?;
    }
    if local.decrypt {
        if ks.spec.decryption.is_none() {
            return Err(CliError::Usage(format!("--decrypt: Kustomization '{}' sets no spec.decryption", local.name)));
        }
        let from_cluster = crate::sops::cluster::decryptor_for(ks, client, client, None).await.map_err(|e| CliError::Usage(format!("--decrypt: {e}")))?;
        if let Some(from_cluster) = from_cluster {
            keys.extend(from_cluster.keys());
        }
    }
    Ok(Some(crate::sops::Decryptor::new(keys)))
}

pub async fn run(cluster: &ClusterArgs, target: BuildTarget) -> Result<(), CliError> {
    let BuildTarget::Kustomization(local) = target;
    let client = super::client(cluster).await?;
    let (_, objects, _) = build(&client, &cluster.namespace, &local).await?;
    print!("{}", crate::kustomize::to_yaml(&objects));
    Ok(())
}

/// Reads the Kustomization and builds the local directory with its settings; also returns the
/// variables it substituted (to mask the Secret values among them in messages).
pub async fn build(client: &Client, ns: &str, local: &LocalBuild) -> Result<(Kustomization, Vec<Value>, Variables), CliError> {
    let object = super::get_object(client, FluxKind::Kustomization, ns, &local.name).await?;
    let ks: Kustomization =
        serde_json::from_value(object).map_err(|e| CliError::Usage(format!("Kustomization '{}' in namespace '{ns}' cannot be read: {e}", local.name)))?;
    let dir =
        std::fs::canonicalize(&local.path).map_err(|e| CliError::Usage(format!("--path {}: {e}; give the local directory to build", local.path.display())))?;
    if !dir.is_dir() {
        return Err(CliError::Usage(format!("--path {} is not a directory", local.path.display())));
    }
    let root = match &local.root {
        Some(root) => std::fs::canonicalize(root).map_err(|e| CliError::Usage(format!("--root {}: {e}", root.display())))?,
        None => default_root(&dir),
    };
    // `substituteFrom` is read from the cluster with the caller's rights, as the controller reads
    // it with the Kustomization's.
    let vars = match &ks.spec.post_build {
        Some(post_build) => variables::substitution_vars(client, ns, post_build).await.map_err(|e| CliError::Usage(e.to_string()))?,
        None => Variables::default(),
    };
    let options = RenderOptions { enable_remote_bases: local.enable_remote };
    let decryptor = decryptor(client, &ks, local).await?;
    let objects = render::render_decrypting(&ks, &root, &dir, &vars, options, decryptor.as_ref())
        .map_err(|e| CliError::Usage(vars.mask(&format!("building {}: {e}", dir.display()))))?;
    Ok((ks, objects, vars))
}

/// The folder files may be read from: the Git work tree holding `dir` (what the source artifact
/// would hold), else `dir` itself.
pub fn default_root(dir: &Path) -> PathBuf {
    dir.ancestors().find(|d| d.join(".git").exists()).unwrap_or(dir).to_path_buf()
}

/// The controller's render, on a local folder. Errors never show values read from Secrets.
pub fn build_local(ks: &Kustomization, root: &Path, dir: &Path, vars: &Variables, options: RenderOptions) -> Result<Vec<Value>, CliError> {
    render::render(ks, root, dir, vars, options).map_err(|e| CliError::Usage(vars.mask(&format!("building {}: {e}", dir.display()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builds_with_the_kustomizations_settings_and_owner_labels() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("config.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  cluster: ${cluster}\n")
            .expect("write");
        let ks: Kustomization = serde_json::from_value(json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": "flux-system"},
            "spec": {"interval": "5m", "prune": true, "sourceRef": {"kind": "GitRepository", "name": "repo"},
                     "targetNamespace": "prod", "namePrefix": "p-", "postBuild": {"substitute": {"cluster": "eu-1"}}}
        }))
        .expect("a Kustomization");
        let vars = Variables::plain(ks.spec.post_build.as_ref().and_then(|p| p.substitute.clone()).unwrap_or_default());
        let objects = build_local(&ks, dir.path(), dir.path(), &vars, RenderOptions::default()).expect("built");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0]["metadata"]["name"], "p-settings");
        assert_eq!(objects[0]["metadata"]["namespace"], "prod");
        assert_eq!(objects[0]["data"]["cluster"], "eu-1");
        assert_eq!(objects[0]["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"], "apps");
        assert_eq!(objects[0]["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/namespace"], "flux-system");
    }

    #[test]
    fn the_default_root_is_the_git_work_tree() {
        let top = tempfile::tempdir().expect("temp dir");
        let apps = top.path().join("apps/prod");
        std::fs::create_dir_all(&apps).expect("mkdir");
        assert_eq!(default_root(&apps), apps);
        std::fs::create_dir(top.path().join(".git")).expect("mkdir");
        assert_eq!(default_root(&apps), top.path());
    }
}
