//! Identical work asked for by many reconciles at once, done once: N GitRepositories on one URL
//! (a platform repository every tenant points at, Flux's own benchmark) list its refs and fetch
//! its commit once per round instead of N times.
//!
//! Freshness is kept: a caller is only ever given the result of work that *started after it
//! arrived*. Whoever arrives while a round runs waits for it to end, and the next round, run by
//! the first of them, serves them all. So a reconcile triggered by a push (its webhook, say)
//! never gets a ref listing taken before the push, and callers wait at most two rounds.
//!
//! No result outlives its lane: once nobody waits on a key, the key is forgotten, so the table
//! holds only keys in use and a later reconcile does its own work. (Written here because the
//! crates for this — `async-singleflight` and the like — share whatever call is in flight,
//! including one started before the caller arrived, which is the freshness bug above.)

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One key's queue: `arrivals` numbers callers in order of arrival; `last` is the latest round's
/// result with the number of callers that had arrived when it started (all of them are served
/// by it).
struct Lane<V> {
    arrivals: AtomicU64,
    last: tokio::sync::Mutex<Option<(u64, V)>>,
}

pub struct Coalescer<K, V> {
    lanes: Mutex<HashMap<K, Arc<Lane<V>>>>,
}

impl<K, V> Default for Coalescer<K, V> {
    fn default() -> Self {
        Coalescer { lanes: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Coalescer<K, V> {
    /// `work`'s result, or that of an identical round (same `key`) that started after this call.
    /// A round cancelled midway (its caller dropped) serves nobody: the next waiter runs its own.
    pub async fn run<F, Fut>(&self, key: K, work: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let lane = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            lanes.entry(key.clone()).or_insert_with(|| Arc::new(Lane { arrivals: AtomicU64::new(0), last: tokio::sync::Mutex::new(None) })).clone()
        };
        let ticket = lane.arrivals.fetch_add(1, Ordering::SeqCst);
        let value = {
            // Waiting for another caller's round is not work: the worker goes to another
            // reconcile meanwhile (which may join this lane too, making the next round bigger).
            let mut last = super::workers::idle(lane.last.lock()).await;
            match last.as_ref() {
                Some((covers, value)) if *covers > ticket => value.clone(),
                _ => {
                    // Everyone who has arrived by now (this caller included) is served by this round.
                    let covers = lane.arrivals.load(Ordering::SeqCst);
                    let value = work().await;
                    *last = Some((covers, value.clone()));
                    value
                }
            }
        };
        let mut lanes = self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // The table's reference and ours: nobody else waits on this key.
        if Arc::strong_count(&lane) == 2 {
            lanes.remove(&key);
        }
        value
    }

    /// Keys with callers right now.
    pub fn keys_in_use(&self) -> usize {
        self.lanes.lock().map(|l| l.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test]
    async fn callers_arriving_during_a_round_share_the_next_one_and_keys_are_forgotten() {
        let coalescer: Arc<Coalescer<&'static str, usize>> = Arc::default();
        let rounds = Arc::new(AtomicUsize::new(0));
        let round = |coalescer: Arc<Coalescer<&'static str, usize>>, rounds: Arc<AtomicUsize>| async move {
            coalescer
                .run("repo", || async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    rounds.fetch_add(1, Ordering::SeqCst) + 1
                })
                .await
        };
        let first = tokio::spawn(round(coalescer.clone(), rounds.clone()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Ten callers arrive while round 1 runs: none may take its result (it started before
        // them); all share round 2.
        let late: Vec<_> = (0..10).map(|_| tokio::spawn(round(coalescer.clone(), rounds.clone()))).collect();
        assert_eq!(first.await.expect("first"), 1);
        for caller in late {
            assert_eq!(caller.await.expect("late"), 2);
        }
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
        assert_eq!(coalescer.keys_in_use(), 0, "a key nobody waits on is forgotten");
        // A caller after all that runs a round of its own.
        assert_eq!(round(coalescer.clone(), rounds.clone()).await, 3);
    }

    #[tokio::test]
    async fn different_keys_never_share_and_a_cancelled_round_serves_nobody() {
        let coalescer: Arc<Coalescer<u8, u8>> = Arc::default();
        let (a, b) = tokio::join!(coalescer.run(1, || async { 10 }), coalescer.run(2, || async { 20 }));
        assert_eq!((a, b), (10, 20));
        let stuck = {
            let coalescer = coalescer.clone();
            tokio::spawn(async move { coalescer.run(1, std::future::pending::<u8>).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let waiter = {
            let coalescer = coalescer.clone();
            tokio::spawn(async move { coalescer.run(1, || async { 11 }).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        stuck.abort();
        assert_eq!(waiter.await.expect("waiter"), 11, "the waiter runs its own round");
    }
}
