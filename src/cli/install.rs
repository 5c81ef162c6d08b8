//! `ferroflux install`: print the in-cluster manifests, or apply them to the current kubeconfig's
//! cluster and wait for the controller, like `flux install`.

use std::path::PathBuf;

use anyhow::Context;

use crate::deploy::{self, InstallOptions, cluster};

#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    /// Print the manifests instead of installing them.
    #[arg(long)]
    pub export: bool,
    /// With --export: write the files of `deploy/` (one per part, kustomization.yaml and
    /// install.yaml) into this folder instead of printing.
    #[arg(long, requires = "export")]
    pub dir: Option<PathBuf>,
    /// Only validate the manifests with a server-side dry-run; nothing is changed.
    #[arg(long, conflicts_with = "export")]
    pub dry_run: bool,
    /// The controller's image (default: ferroflux:<version>, as hack/image.sh builds it).
    #[arg(long)]
    pub image: Option<String>,
    /// Restricted mode: no cluster-admin binding; each Kustomization's objects are applied as its
    /// spec.serviceAccountName, or as this ServiceAccount of its namespace when it names none.
    #[arg(long, value_name = "NAME")]
    pub default_service_account: Option<String>,
}

/// The namespace the controller runs in is the global `-n/--namespace` (default `flux-system`);
/// the wait for Available is bounded by the global `--timeout`; the cluster is the global
/// `--kubeconfig`/`--context`'s.
pub async fn run(cluster_args: &super::ClusterArgs, args: InstallArgs) -> anyhow::Result<()> {
    let options = InstallOptions {
        namespace: cluster_args.namespace.clone(),
        image: args.image.clone().unwrap_or_else(deploy::default_image),
        default_service_account: args.default_service_account.clone(),
    };
    let manifests = deploy::manifests(&options)?;
    if args.export {
        return export(&manifests, args.dir);
    }

    let client = super::client(cluster_args)
        .await
        .context("no cluster to install into: set KUBECONFIG (or --kubeconfig/--context) to the cluster, or use --export to print the manifests")?;
    client.apiserver_version().await.context("the API server of the current kubeconfig does not answer: check KUBECONFIG and that the cluster is running")?;
    if args.dry_run {
        let outcome = cluster::dry_run(&client, &manifests.all()).await?;
        for id in &outcome.valid {
            println!("✔ {id} valid (server dry run)");
        }
        if !outcome.unchecked.is_empty() {
            println!(
                "! namespace {} does not exist yet and a dry-run does not create it, so these were not validated: {}",
                options.namespace,
                outcome.unchecked.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            );
        }
        println!("✔ dry run finished: nothing was changed");
        return Ok(());
    }

    println!("► installing ferroflux {} in namespace {}{}", options.image, options.namespace, if options.restricted() { " (restricted mode)" } else { "" });
    let changes = cluster::apply(&client, manifests.all(), cluster_args.timeout).await?;
    for change in &changes {
        println!("✔ {change}");
    }
    if options.restricted() && cluster::remove_cluster_admin_binding(&client, &options).await? {
        println!("✔ ClusterRoleBinding/{} deleted: restricted mode grants no cluster-admin", deploy::cluster_admin_binding_name(&options));
    }
    println!("◎ waiting for Deployment {}/{} to become Available (timeout {:?})", options.namespace, deploy::APP_NAME, cluster_args.timeout);
    cluster::wait_available(&client, &options.namespace, cluster_args.timeout, |status| println!("  {status}")).await?;
    println!("✔ install finished: the controller is Available");
    Ok(())
}

fn export(manifests: &deploy::Manifests, dir: Option<PathBuf>) -> anyhow::Result<()> {
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, content) in manifests.files() {
                let path = dir.join(name);
                std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
            }
        }
        None => print!("{}", manifests.to_yaml()),
    }
    Ok(())
}
