//! The reconcilers and what they share: the context, events, and failures that end as
//! `Ready=False` with a reason and a message.

pub mod artifact;
pub mod coalesce;
pub mod conditions;
pub mod drift;
pub mod events;
pub mod gitrepository;
pub mod health;
pub mod kustomization;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod reconciler;
pub mod render;
pub mod substitute;
pub mod unchanged;
pub mod variables;
pub mod workers;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::{Client, Resource};
use tracing::warn;

use crate::apply::Applier;

/// Process-wide settings of the reconcilers, from `ferroflux controller`'s flags.
#[derive(Clone, Debug, Default)]
pub struct ControllerOptions {
    /// `--no-cross-namespace-refs`: a Kustomization may only use sources and dependencies in its
    /// own namespace.
    pub no_cross_namespace_refs: bool,
    /// `--default-service-account`: the ServiceAccount (in the Kustomization's namespace) to
    /// impersonate when `spec.serviceAccountName` is empty. Unset: the controller's own identity.
    pub default_service_account: Option<String>,
    /// Remote (URL) bases in kustomizations; `--no-remote-bases` turns them off.
    pub enable_remote_bases: bool,
    /// `--allow-insecure-http-credentials`: a GitRepository's credentials may go over plain
    /// `http://`.
    pub allow_insecure_http_credentials: bool,
    /// `--sops-age-secret`: age keys for Kustomizations whose `spec.decryption` names no Secret.
    pub sops_age_secret: Option<crate::sops::cluster::SecretName>,
    /// `--requeue-dependency`; `None`: Flux's default, 30 seconds.
    pub requeue_dependency: Option<Duration>,
}

impl ControllerOptions {
    /// When a Kustomization looks again at a dependency that is not ready or a source without
    /// an artifact.
    pub fn dependency_requeue(&self) -> Duration {
        self.requeue_dependency.unwrap_or(Duration::from_secs(30))
    }
}

/// Everything a reconcile needs, shared by all reconciles.
pub struct Context {
    pub client: Client,
    /// The configuration `client` was made from; impersonating clients are derived from it.
    config: Option<kube::Config>,
    pub options: ControllerOptions,
    pub recorder: events::EventRecorder,
    /// The applier acting as the controller itself.
    pub applier: Arc<Applier>,
    /// Appliers impersonating ServiceAccounts, by user name (`system:serviceaccount:ns:name`),
    /// and appliers for other clusters (`kubeconfig:<secret uid>@<resourceVersion>:<user>`).
    impersonating: tokio::sync::Mutex<HashMap<String, Arc<Applier>>>,
    pub artifacts: artifact::ArtifactCache,
    pub metrics: Arc<metrics::Metrics>,
    /// Per Kustomization (`namespace/name`): what was last applied, so that a reconcile where
    /// nothing changed costs a few LIST requests instead of a dry-run per object.
    pub applied: tokio::sync::Mutex<HashMap<String, crate::apply::AppliedState>>,
    /// The newest artifact of each source (`GitRepository/ns/name`), kept current by the
    /// manager's watch: a running health wait gives way as soon as its revision changes, and a
    /// reconcile takes its source's artifact from here instead of a GET (as Flux reads sources
    /// from its informer cache).
    /// `None`: watched, without an artifact yet.
    pub source_artifacts: std::sync::RwLock<HashMap<String, Option<crate::api::meta::Artifact>>>,
    /// Consecutive reconcile errors per object, for the error policy's backoff.
    pub failures: reconciler::FailureCounts,
    /// The resourceVersion of each of our objects as this process last wrote or read it: a
    /// reconcile whose cached copy is at that version needs no GET of it first.
    pub versions: reconciler::KnownVersions,
    /// Per Kustomization: the digest of the files its last successful build could read, so a
    /// new revision that leaves them unchanged is recorded without building or applying.
    pub inputs: unchanged::InputsMemo,
}

impl Context {
    /// `config` is what `client` was made from; without it, ServiceAccount impersonation is
    /// refused with a clear error.
    pub fn new(
        client: Client,
        config: Option<kube::Config>,
        options: ControllerOptions,
        artifacts: artifact::ArtifactCache,
        metrics: Arc<metrics::Metrics>,
    ) -> Self {
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| "ferroflux".into());
        Context {
            recorder: events::EventRecorder::new(client.clone(), "ferroflux", &instance),
            applier: Arc::new(Applier::new(client.clone())),
            client,
            config,
            options,
            impersonating: tokio::sync::Mutex::new(HashMap::new()),
            artifacts,
            metrics,
            applied: tokio::sync::Mutex::new(HashMap::new()),
            source_artifacts: std::sync::RwLock::new(HashMap::new()),
            failures: reconciler::FailureCounts::default(),
            versions: reconciler::KnownVersions::default(),
            inputs: unchanged::InputsMemo::default(),
        }
    }

    /// The applier that acts for `service_account` in `namespace` (Kubernetes impersonation:
    /// every apply, prune and read of applied objects is authorized as that ServiceAccount), or
    /// the controller's own applier when there is none.
    pub async fn applier_as(&self, namespace: &str, service_account: Option<&str>) -> Result<Arc<Applier>, kube::Error> {
        let Some(account) = self.service_account(service_account) else {
            return Ok(self.applier.clone());
        };
        let user = format!("system:serviceaccount:{namespace}:{account}");
        let mut appliers = self.impersonating.lock().await;
        if let Some(applier) = appliers.get(&user) {
            return Ok(applier.clone());
        }
        let mut config = self
            .config
            .clone()
            .ok_or_else(|| kube::Error::Service("ServiceAccount impersonation needs the controller's kube config, which this process does not have".into()))?;
        config.auth_info.impersonate = Some(user.clone());
        config.auth_info.impersonate_groups = None;
        let applier = Arc::new(Applier::new(Client::try_from(config)?));
        appliers.insert(user, applier.clone());
        Ok(applier)
    }

    /// The ServiceAccount a Kustomization acts as: its own `serviceAccountName`, else the
    /// controller's `--default-service-account`. An empty name is unset, exactly like a missing
    /// one: `serviceAccountName: ""` must never switch restricted mode off.
    pub fn service_account<'a>(&'a self, requested: Option<&'a str>) -> Option<&'a str> {
        effective_service_account(requested, self.options.default_service_account.as_deref())
    }

    /// Remembers what the watch says of a source: `Some(None)` while it has no artifact, `None`
    /// once it is deleted (or being deleted: then it is read again, and found gone). Returns
    /// whether that changed what its Kustomizations would build from (a finalizer or condition
    /// written on the source does not).
    pub fn observe_source_artifact(&self, key: String, artifact: Option<Option<crate::api::meta::Artifact>>) -> bool {
        let Ok(mut artifacts) = self.source_artifacts.write() else { return true };
        let before = artifacts.get(&key).map(|a| a.as_ref().map(|a| (a.revision.clone(), a.digest.clone(), a.url.clone())));
        let after = artifact.as_ref().map(|a| a.as_ref().map(|a| (a.revision.clone(), a.digest.clone(), a.url.clone())));
        match artifact {
            Some(artifact) => artifacts.insert(key, artifact),
            None => artifacts.remove(&key),
        };
        before != after
    }

    /// The newest artifact revision seen for a source, if the manager watches it.
    pub fn source_revision(&self, key: &str) -> Option<String> {
        self.source_artifact(key).flatten().map(|a| a.revision)
    }

    /// What the watch last saw of a source: `None` when it does not watch it, `Some(None)` when
    /// the source has no artifact yet.
    pub fn source_artifact(&self, key: &str) -> Option<Option<crate::api::meta::Artifact>> {
        self.source_artifacts.read().ok().and_then(|r| r.get(key).cloned())
    }

    /// The applier for another cluster, from a kubeconfig (`spec.kubeConfig.secretRef`), acting
    /// as `service_account` there when one is named. `cache_key` identifies the kubeconfig's
    /// version (the Secret's uid and resourceVersion), so an edited Secret gives a new client.
    pub async fn applier_for_kubeconfig(&self, cache_key: &str, kubeconfig: &str, impersonate: Option<String>) -> Result<Arc<Applier>, RemoteClusterError> {
        let key = format!("kubeconfig:{cache_key}:{}", impersonate.as_deref().unwrap_or_default());
        let mut appliers = self.impersonating.lock().await;
        if let Some(applier) = appliers.get(&key) {
            return Ok(applier.clone());
        }
        // The parser's error quotes the text it failed on, and this text is a Secret's value:
        // say only that it is not a kubeconfig.
        let kubeconfig = kube::config::Kubeconfig::from_yaml(kubeconfig).map_err(|e| match e {
            kube::config::KubeconfigError::Parse(_) => RemoteClusterError::NotYaml,
            other => RemoteClusterError::Kubeconfig(other),
        })?;
        refuse_local_references(&kubeconfig)?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await.map_err(RemoteClusterError::Kubeconfig)?;
        if impersonate.is_some() {
            config.auth_info.impersonate = impersonate;
            config.auth_info.impersonate_groups = None;
        }
        let applier = Arc::new(Applier::new(Client::try_from(config)?));
        // Clients made from earlier versions of the same Secret are dropped, not kept forever.
        let secret = cache_key.split('@').next().unwrap_or(cache_key);
        appliers.retain(|k, _| !k.starts_with(&format!("kubeconfig:{secret}@")));
        appliers.insert(key, applier.clone());
        Ok(applier)
    }

    /// Records a Kubernetes Event on `object`. Failing to record is logged, never fatal: the
    /// status carries the same information.
    pub async fn event<K: Resource<DynamicType = ()>>(&self, object: &K, warning: bool, reason: &str, note: String) {
        // Notes are limited to 1 KiB; long change lists are cut.
        let note = truncate(note, 1000);
        if let Err(e) = self.recorder.publish(object.object_ref(&()), warning, reason, &note).await {
            warn!(error = %e, reason, "failed to record an event");
        }
    }
}

fn effective_service_account<'a>(requested: Option<&'a str>, default: Option<&'a str>) -> Option<&'a str> {
    requested.filter(|a| !a.is_empty()).or(default.filter(|a| !a.is_empty()))
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// A kubeconfig from a Secret is written by whoever may write Secrets in a namespace: it may
/// not run commands in the controller (`exec`, `auth-provider`) nor read the controller's files
/// (paths to certificates, keys, tokens). Flux refuses the same by default.
fn refuse_local_references(kubeconfig: &kube::config::Kubeconfig) -> Result<(), RemoteClusterError> {
    for named in &kubeconfig.auth_infos {
        let Some(auth) = &named.auth_info else { continue };
        let refused = [
            (auth.exec.is_some(), "exec"),
            (auth.auth_provider.is_some(), "auth-provider"),
            (auth.token_file.is_some(), "tokenFile"),
            (auth.client_certificate.is_some(), "client-certificate (a file path)"),
            (auth.client_key.is_some(), "client-key (a file path)"),
        ];
        if let Some((_, field)) = refused.iter().find(|(set, _)| *set) {
            return Err(RemoteClusterError::Refused(format!(
                "user '{}' uses {field}; only inline credentials (token, client-certificate-data, client-key-data, username/password) are allowed",
                named.name
            )));
        }
    }
    for named in &kubeconfig.clusters {
        if named.cluster.as_ref().is_some_and(|c| c.certificate_authority.is_some()) {
            return Err(RemoteClusterError::Refused(format!(
                "cluster '{}' uses certificate-authority (a file path); use certificate-authority-data",
                named.name
            )));
        }
    }
    Ok(())
}

/// Why a client for another cluster (`spec.kubeConfig`) could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RemoteClusterError {
    #[error("invalid kubeconfig: {0}")]
    Kubeconfig(kube::config::KubeconfigError),
    #[error("not a kubeconfig: the value is not valid kubeconfig YAML")]
    NotYaml,
    #[error("kubeconfig: {0}")]
    Client(#[from] kube::Error),
    #[error("refused kubeconfig: {0}")]
    Refused(String),
}

/// When to reconcile again after a [`Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// After `spec.retryInterval` (default: the interval), as Flux does.
    RetryInterval,
    /// After this long (a dependency not ready yet, a health wait given way to a new revision).
    After(Duration),
}

/// A reconcile that could not finish: ends as `Ready=False` with this reason and message, an
/// Event, and a retry.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
    pub retry: Retry,
    /// Recorded as a warning Event too (all but the waits Flux only logs).
    pub event: bool,
}

impl Failure {
    /// Retried after the retry interval.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Failure { reason, message: message.into(), retry: Retry::RetryInterval, event: true }
    }

    /// A wait, not a fault (the source has no artifact yet): in the status and the log, but no
    /// Event, as Flux does; a thousand Kustomizations created with their sources would
    /// otherwise each record one while their sources are cloned.
    pub fn without_event(mut self) -> Self {
        self.event = false;
        self
    }

    /// Retried after `after` instead.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry = Retry::After(after);
        self
    }
}

/// The error of a reconcile that failed before it could write a status (the API server
/// unreachable, a conflict) or while cleaning up: retried with backoff by
/// [`reconciler::error_policy`].
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing the finalizer failed, or the reconcile inside it.
    #[error(transparent)]
    Finalizer(Box<kube::runtime::finalizer::Error<ReconcileError>>),
    /// Deleting what the object owns failed: the finalizer stays and the deletion is retried.
    #[error("cleanup: {0}")]
    Cleanup(#[source] Failure),
    #[error("artifact storage: {0}")]
    Storage(#[from] crate::source::storage::StorageError),
    /// A state the reconciler should never reach.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// `metav1.Time` now.
pub fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now())
}

/// The interval plus up to 5% jitter, so that many objects created at once spread out.
pub fn with_jitter(interval: Duration) -> Duration {
    interval + interval.mul_f64(fastrand::f64() * 0.05)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(user: &str, cluster: &str) -> kube::config::Kubeconfig {
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nclusters:\n- name: k\n  cluster:\n    server: https://example.invalid\n{cluster}users:\n- name: u\n  user:\n{user}"
        );
        kube::config::Kubeconfig::from_yaml(&text).expect("kubeconfig")
    }

    #[test]
    fn an_empty_service_account_name_is_unset() {
        assert_eq!(effective_service_account(Some(""), Some("deployer")), Some("deployer"));
        assert_eq!(effective_service_account(None, Some("deployer")), Some("deployer"));
        assert_eq!(effective_service_account(Some("app"), Some("deployer")), Some("app"));
        assert_eq!(effective_service_account(Some(""), Some("")), None);
        assert_eq!(effective_service_account(Some(""), None), None);
    }

    #[tokio::test]
    async fn kubeconfig_parse_errors_never_quote_the_secret() {
        // A client that is never used: the kubeconfig is refused before any request.
        let client = Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().expect("url"))).expect("client");
        let ctx = Context::new(client, None, ControllerOptions::default(), artifact::ArtifactCache::new(std::env::temp_dir()), Default::default());
        let err = ctx.applier_for_kubeconfig("uid@1", "hunter2-s3cret: [unterminated", None).await.err().expect("refused").to_string();
        assert!(!err.contains("hunter2") && !err.contains("s3cret"), "{err}");
    }

    #[test]
    fn kubeconfigs_from_secrets_may_not_run_commands_or_read_files() {
        assert!(refuse_local_references(&kubeconfig("    token: abc\n", "")).is_ok());
        for user in [
            "    exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh}\n",
            "    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n",
            "    client-certificate: /etc/cert.pem\n",
            "    client-key: /etc/key.pem\n",
        ] {
            assert!(refuse_local_references(&kubeconfig(user, "")).is_err(), "{user}");
        }
        assert!(refuse_local_references(&kubeconfig("    token: abc\n", "    certificate-authority: /etc/ca.pem\n")).is_err());
    }
}
