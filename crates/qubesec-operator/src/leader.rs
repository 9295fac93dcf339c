//! Leader election on a `coordination.k8s.io/v1` Lease: several replicas run,
//! one reconciles. The holder renews the lease; another replica takes it over
//! once it has not been renewed for its duration. Updates carry the Lease's
//! `resourceVersion`, so two replicas can never both win the same round.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};

/// Where the lease lives, who we are, and its timing.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
    /// How often the holder renews (and others retry); well below `duration`.
    pub retry_every: Duration,
}

impl LeaseConfig {
    /// How long the holder keeps leading without a successful renewal: one retry interval less
    /// than the lease duration (at least half of it), so it has stopped before any other replica may see the lease as
    /// expired (measured from before the request that set `renewTime`, so never late).
    pub fn renew_deadline(&self) -> Duration {
        self.duration.saturating_sub(self.retry_every).max(self.duration / 2)
    }
}

/// Called with `true` on becoming the leader and `false` on losing the lease.
type Observer = Arc<dyn Fn(bool) + Send + Sync>;

/// Competes for a Lease and runs work only while holding it.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    observer: Option<Observer>,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector").field("config", &self.config).finish_non_exhaustive()
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists())
}

impl LeaderElector {
    /// An elector over `client`.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self { api: Api::namespaced(client, &config.namespace), config, observer: None }
    }

    /// Calls `f(true)` whenever this replica becomes the leader and `f(false)` when it stops leading.
    #[must_use]
    pub fn observe(mut self, f: impl Fn(bool) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    fn notify(&self, leading: bool) {
        if let Some(f) = &self.observer {
            f(leading);
        }
    }

    /// Gives the lease up if this replica holds it, so another replica takes over at once instead
    /// of after the lease duration. Call it after the work has stopped (on shutdown).
    ///
    /// # Errors
    /// API errors; a lease that is gone or held by another replica is not an error.
    pub async fn release(&self) -> Result<(), kube::Error> {
        self.notify(false);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else { return Ok(()) };
        let Some(spec) = lease.spec.as_mut() else { return Ok(()) };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(_) => {
                tracing::info!(identity = %self.config.identity, lease = %self.config.name, "released the lease");
                Ok(())
            }
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, now: Timestamp, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let mine = previous.and_then(|p| p.holder_identity.as_deref()) == Some(self.config.identity.as_str());
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.config.duration.as_secs().max(1)).unwrap_or(i32::MAX)),
            acquire_time: if mine { previous.and_then(|p| p.acquire_time.clone()) } else { Some(MicroTime(now)) },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if mine || previous.is_none() {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..LeaseSpec::default()
        }
    }

    /// One round: takes the lease if it is free, expired or already ours, and renews it.
    /// `Ok(false)` when another replica holds it (or won this round).
    ///
    /// # Errors
    /// API errors other than a lost race.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let mine = spec.holder_identity.as_deref() == Some(self.config.identity.as_str());
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(t), Some(secs)) => {
                t.0.checked_add(SignedDuration::from_secs(i64::from(secs))).map_or(true, |until| until < now)
            }
            _ => true,
        };
        if !mine && !expired && spec.holder_identity.is_some() {
            return Ok(false);
        }
        let mut next = lease;
        next.spec = Some(self.spec(now, Some(&spec)));
        match self.api.replace(&self.config.name, &PostParams::default(), &next).await {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs `work` whenever this replica holds the lease, and stops it (drops it) as soon as the
    /// lease is lost: another holder, or no successful renewal for a lease duration. Dropping the
    /// returned future stops `work` too. Never returns on its own.
    pub async fn run<F, Fut>(&self, work: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let acquired_at = loop {
                let attempt = Instant::now();
                match self.try_acquire().await {
                    Ok(true) => break attempt,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "leader election: could not read or take the lease"),
                }
                tokio::time::sleep(self.config.retry_every).await;
            };
            tracing::info!(identity = %self.config.identity, lease = %self.config.name, "became the leader");
            self.notify(true);
            tokio::select! {
                () = work() => tracing::warn!("the controllers stopped while leading"),
                () = self.hold(acquired_at) => {
                    tracing::warn!(identity = %self.config.identity, "lost the lease; stopping the controllers");
                }
            }
            self.notify(false);
        }
    }

    /// Renews the lease until it is lost: another holder took it, or no renewal succeeded within
    /// the renew deadline (a partitioned leader stops even while its request hangs).
    async fn hold(&self, acquired_at: Instant) {
        let deadline = self.config.renew_deadline();
        let mut renewed = acquired_at;
        loop {
            // Never sleep past the deadline: a failed renewal just before it must not keep the
            // controllers running for another full retry interval.
            let left = deadline.saturating_sub(renewed.elapsed());
            tokio::time::sleep(self.config.retry_every.min(left)).await;
            let attempt = Instant::now();
            let left = deadline.saturating_sub(renewed.elapsed());
            match tokio::time::timeout(left, self.try_acquire()).await {
                Ok(Ok(true)) => renewed = attempt,
                Ok(Ok(false)) => return,
                Ok(Err(e)) if renewed.elapsed() >= deadline => {
                    tracing::warn!(error = %e, "leader election: no renewal within the renew deadline");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "leader election: renewal failed, retrying"),
                Err(_) => {
                    tracing::warn!("leader election: renewal did not finish within the renew deadline");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(duration: u64, retry_every: u64) -> LeaseConfig {
        LeaseConfig {
            namespace: "ns".into(),
            name: "lease".into(),
            identity: "me".into(),
            duration: Duration::from_secs(duration),
            retry_every: Duration::from_secs(retry_every),
        }
    }

    #[test]
    fn the_leader_stops_before_its_lease_can_expire() {
        assert_eq!(config(15, 4).renew_deadline(), Duration::from_secs(11));
        assert_eq!(config(60, 5).renew_deadline(), Duration::from_secs(55));
        // Never past the lease duration, even with a retry interval as long as the lease.
        assert_eq!(config(4, 5).renew_deadline(), Duration::from_secs(2));
    }
}
