//! Leader election on a `coordination.k8s.io/v1` Lease, the way controller-runtime does it: only
//! the holder reconciles and serves artifacts; the others wait until the holder stops renewing.
//!
//! Expiry is judged by the local clock from the moment this process last *saw the record change*
//! (as client-go does), never by comparing the holder's `renewTime` with our clock, so clock skew
//! between replicas cannot hand the lease to two holders.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader election lease {namespace}/{name}: {source}")]
    Api { namespace: String, name: String, source: kube::Error },
    #[error("lost the leader election lease {namespace}/{name}: not renewed within {deadline:?}")]
    Lost { namespace: String, name: String, deadline: Duration },
}

/// Timings, named like controller-runtime's flags.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// The Lease's namespace and name.
    pub namespace: String,
    pub name: String,
    /// Who we are: the Pod name plus a random part, so a restarted Pod is a new holder.
    pub identity: String,
    /// How long others wait after the last renewal before taking over.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leadership.
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

/// What this process saw of the Lease last, and when (local clock).
#[derive(Clone, Debug, PartialEq)]
struct Observed {
    holder: String,
    renew_time: Option<String>,
    lease_duration: Duration,
    at: Instant,
}

/// What to do with the Lease as it is now.
#[derive(Debug, PartialEq)]
enum Step {
    /// Nobody holds it, or the holder stopped renewing: take it over.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds it and renews: look again later.
    Wait,
}

/// The decision, pure: `observed` is the record as first seen unchanged since `observed.at`.
fn decide(observed: &Observed, identity: &str, now: Instant) -> Step {
    if observed.holder == identity {
        Step::Renew
    } else if observed.holder.is_empty() || now.duration_since(observed.at) >= observed.lease_duration {
        Step::Acquire
    } else {
        Step::Wait
    }
}

/// The running election: [`LeaderElector::acquire`] blocks until we lead, then
/// [`LeaderElector::keep`] renews until renewing fails for longer than the renew deadline.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderConfig,
    observed: Option<Observed>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaderConfig) -> Self {
        LeaderElector { api: Api::namespaced(client, &config.namespace), config, observed: None }
    }

    fn api_error(&self, source: kube::Error) -> LeaderError {
        LeaderError::Api { namespace: self.config.namespace.clone(), name: self.config.name.clone(), source }
    }

    /// Waits until this process holds the Lease.
    pub async fn acquire(&mut self) -> Result<(), LeaderError> {
        info!(lease = %format!("{}/{}", self.config.namespace, self.config.name), identity = %self.config.identity, "waiting for leadership");
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(identity = %self.config.identity, "became leader");
                    return Ok(());
                }
                Ok(false) => {}
                // Conflicts (another replica wrote first) and transient errors: try again.
                Err(e) => warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the Lease every retry period; returns an error once it could not be renewed for
    /// the renew deadline (or someone else took it), at which point the caller must stop leading.
    pub async fn keep(&mut self) -> LeaderError {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => {
                    return LeaderError::Lost {
                        namespace: self.config.namespace.clone(),
                        name: self.config.name.clone(),
                        deadline: self.config.renew_deadline,
                    };
                }
                Err(e) => warn!(error = %e, "renewing the leader election lease"),
            }
            if last_renewed.elapsed() >= self.config.renew_deadline {
                return LeaderError::Lost { namespace: self.config.namespace.clone(), name: self.config.name.clone(), deadline: self.config.renew_deadline };
            }
        }
    }

    /// Gives the Lease up on a clean shutdown, so another replica takes over at once instead of
    /// after the lease duration.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else { return };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(_) => info!("released the leader election lease"),
            Err(e) => warn!(error = %e, "releasing the leader election lease"),
        }
    }

    /// One round: reads the Lease, and acquires or renews it when [`decide`] says so.
    /// `Ok(true)` when we hold it afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaderError> {
        let now = Instant::now();
        let stamp = MicroTime(jiff::Timestamp::now());
        let lease_seconds = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX).max(1);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await.map_err(|e| self.api_error(e))? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.config.name.clone()), namespace: Some(self.config.namespace.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(lease_seconds),
                    acquire_time: Some(stamp.clone()),
                    renew_time: Some(stamp),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            self.api.create(&PostParams::default(), &lease).await.map_err(|e| self.api_error(e))?;
            return Ok(true);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let seen = Observed {
            holder: spec.holder_identity.clone().unwrap_or_default(),
            renew_time: spec.renew_time.as_ref().map(|t| t.0.to_string()),
            lease_duration: Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(lease_seconds)).unwrap_or(1)),
            at: now,
        };
        // The clock of a record starts when we first see it; an unchanged record keeps its time.
        let observed = match &self.observed {
            Some(previous) if previous.holder == seen.holder && previous.renew_time == seen.renew_time => previous.clone(),
            _ => seen,
        };
        self.observed = Some(observed.clone());
        let step = decide(&observed, &self.config.identity, now);
        if step == Step::Wait {
            return Ok(false);
        }
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if step == Step::Acquire {
            spec.acquire_time = Some(stamp.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            info!(previous = %observed.holder, "taking over the leader election lease");
        }
        spec.holder_identity = Some(self.config.identity.clone());
        spec.lease_duration_seconds = Some(lease_seconds);
        spec.renew_time = Some(stamp);
        // `replace` carries the resourceVersion we read: if another replica wrote in between, the
        // API server answers 409 and nobody holds it twice.
        let written = self.api.replace(&self.config.name, &PostParams::default(), &lease).await.map_err(|e| self.api_error(e))?;
        let spec = written.spec.unwrap_or_default();
        self.observed = Some(Observed {
            holder: spec.holder_identity.unwrap_or_default(),
            renew_time: spec.renew_time.map(|t| t.0.to_string()),
            lease_duration: self.config.lease_duration,
            at: Instant::now(),
        });
        Ok(true)
    }
}

/// A holder identity unique to this process: the Pod name (or host name) and a random suffix.
pub fn identity() -> String {
    let base = std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "ferroflux".into());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{base}_{}_{:x}", std::process::id(), nanos & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(holder: &str, at: Instant) -> Observed {
        Observed { holder: holder.into(), renew_time: Some("t".into()), lease_duration: Duration::from_secs(15), at }
    }

    #[test]
    fn holder_renews_others_wait_until_expiry() {
        let t0 = Instant::now();
        assert_eq!(decide(&observed("me", t0), "me", t0), Step::Renew);
        assert_eq!(decide(&observed("other", t0), "me", t0 + Duration::from_secs(14)), Step::Wait);
        assert_eq!(decide(&observed("other", t0), "me", t0 + Duration::from_secs(15)), Step::Acquire);
        assert_eq!(decide(&observed("", t0), "me", t0), Step::Acquire);
    }
}
