//! `--concurrent`: how many reconciles of a kind *work* at once. A reconcile that only waits
//! (for its objects to become healthy, for a Git round another reconcile runs for it) gives its
//! worker back while it waits and queues for one again to go on.
//!
//! Flux counts a waiting reconcile as a busy one: a Kustomization with `wait: true` holds a
//! worker while its Deployment rolls out. With a thousand Kustomizations and 20 workers, that
//! wait (a second or more each, the time the Deployment controller takes to report) bounded the
//! whole rollout at a thousand waits divided by 20, while the machine sat idle. Here the waits
//! overlap; the work (applies, health polls, Git operations) stays bounded by the workers.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

tokio::task_local! {
    static SLOT: Slot;
}

/// The worker pool a reconcile runs on and the permit it holds now (none while it waits).
struct Slot {
    workers: Arc<Semaphore>,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Slot {
    fn release(&self) {
        drop(self.permit.lock().unwrap_or_else(PoisonError::into_inner).take());
    }

    async fn acquire(&self) {
        // The semaphore is never closed; should it be, going on without a permit beats stopping.
        let permit = self.workers.clone().acquire_owned().await.ok();
        *self.permit.lock().unwrap_or_else(PoisonError::into_inner) = permit;
    }
}

/// Runs `reconcile` on one of `workers`' permits. Tokio's semaphore hands out permits first
/// come, first served, so reconciles (and waiters coming back) get their turn in order.
pub async fn on_worker<Fut: Future>(workers: Arc<Semaphore>, reconcile: Fut) -> Fut::Output {
    let slot = Slot { workers, permit: Mutex::new(None) };
    slot.acquire().await;
    SLOT.scope(slot, reconcile).await
}

/// Awaits `wait` without holding a worker, then queues for one again. Outside [`on_worker`]
/// (tests, the CLI) it just awaits.
pub async fn idle<F: Future>(wait: F) -> F::Output {
    if SLOT.try_with(Slot::release).is_err() {
        return wait.await;
    }
    let output = wait.await;
    // The slot is the one released above: this runs inside the same scope.
    let workers = SLOT.try_with(|slot| slot.workers.clone()).ok();
    if let Some(workers) = workers {
        let permit = workers.acquire_owned().await.ok();
        let _ = SLOT.try_with(|slot| *slot.permit.lock().unwrap_or_else(PoisonError::into_inner) = permit);
    }
    output
}

/// Sleeps for `duration` without holding a worker.
pub async fn idle_for(duration: std::time::Duration) {
    idle(tokio::time::sleep(duration)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiting_reconcile_gives_its_worker_to_others_and_gets_one_back() {
        let workers = Arc::new(Semaphore::new(1));
        let working = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let steps = Arc::new(Mutex::new(Vec::new()));
        let reconcile = |id: usize, working: Arc<AtomicUsize>, most: Arc<AtomicUsize>, steps: Arc<Mutex<Vec<(usize, usize)>>>| async move {
            for step in 0..3 {
                let now = working.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                steps.lock().expect("steps").push((id, step));
                tokio::time::sleep(Duration::from_millis(5)).await;
                working.fetch_sub(1, Ordering::SeqCst);
                idle_for(Duration::from_millis(200)).await;
            }
        };
        let all: Vec<_> = (0..5).map(|id| tokio::spawn(on_worker(workers.clone(), reconcile(id, working.clone(), most.clone(), steps.clone())))).collect();
        for one in all {
            one.await.expect("reconcile");
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "work never ran on more than the one worker");
        // While the first reconcile waits, the others do their first step on its worker; one
        // holding the worker through its waits would do all three steps first.
        let steps = steps.lock().expect("steps").clone();
        assert_eq!(steps.len(), 15);
        assert!(steps[..5].iter().all(|(_, step)| *step == 0), "first steps of all five came first: {steps:?}");
        assert_eq!(workers.available_permits(), 1, "every permit came back");
    }

    #[tokio::test]
    async fn outside_a_worker_idle_just_waits() {
        assert_eq!(idle(async { 7 }).await, 7);
    }
}
