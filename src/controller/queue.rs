//! The controller's work queue, refresh timers and per-SecretRef state: one map, one lock.
//!
//! kube-runtime's `Controller` keeps a queue entry (its scheduler's hash map *and* its delay queue,
//! each holding an `ObjectRef` with four strings) for every object it was told to requeue, and it
//! never gives the capacity back: at 100,000 SecretRefs that was most of the operator's memory. So
//! the controller keeps its own, compact bookkeeping here, and its own runner (`controller::run`:
//! a concurrency limit, and the claims that keep one object from being reconciled twice at once):
//!
//! - every SecretRef has one [`RefState`] in one map, keyed by an interned `namespace/name`;
//! - a change (watch event, store change, owned Secret change, wake-up) marks it queued — at most
//!   once — in a FIFO of interned keys ([`Work::enqueue`]);
//! - refresh slots and backoff steps are entries of one binary heap of `(when, key)`
//!   ([`Work::schedule`]); a timer that was replaced or whose SecretRef is gone is dropped when it
//!   comes up, so the heap holds about one entry per SecretRef;
//! - the runner is fed from the FIFO with at most `bound` requests in its hands at once
//!   ([`Work::next`], [`Work::finished`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::context::RefState;

/// See the module documentation.
pub struct Work {
    inner: Mutex<Inner>,
    /// A key became ready, or a request left the runner.
    fed: Notify,
    /// The earliest timer changed.
    timers_changed: Notify,
    bound: usize,
}

#[derive(Default)]
struct Inner {
    states: HashMap<Arc<str>, RefState>,
    ready: VecDeque<Arc<str>>,
    in_flight: usize,
    timers: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
}

impl Inner {
    /// The state of `key`, created if new; returns the interned key too.
    fn entry(&mut self, key: &str) -> (Arc<str>, &mut RefState) {
        let k = match self.states.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => {
                let k: Arc<str> = Arc::from(key);
                self.states.insert(k.clone(), RefState::default());
                k
            }
        };
        let s = self.states.entry(k.clone()).or_default();
        (k, s)
    }

    fn enqueue(&mut self, key: &str) -> bool {
        let (k, s) = self.entry(key);
        if s.queued {
            return false;
        }
        s.queued = true;
        self.ready.push_back(k);
        true
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sizes of the bookkeeping (for the bench and the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkSizes {
    /// SecretRefs with state.
    pub states: usize,
    /// Keys waiting for the runner.
    pub ready: usize,
    /// Requests in the runner's hands.
    pub in_flight: usize,
    /// Timer entries (live and replaced).
    pub timers: usize,
}

impl Work {
    /// A queue that hands the runner at most `bound` requests at once.
    pub fn new(bound: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            fed: Notify::new(),
            timers_changed: Notify::new(),
            bound: bound.max(1),
        }
    }

    /// Runs `f` on the state of `key` (created if new).
    pub fn with_state<R>(&self, key: &str, f: impl FnOnce(&mut RefState) -> R) -> R {
        let mut g = lock(&self.inner);
        f(g.entry(key).1)
    }

    /// The interned `key` (its state is created if new).
    pub fn intern(&self, key: &str) -> Arc<str> {
        lock(&self.inner).entry(key).0
    }

    /// Runs `f` on the state of `key` if it has one.
    pub fn with_existing<R>(&self, key: &str, f: impl FnOnce(&mut RefState) -> R) -> Option<R> {
        lock(&self.inner).states.get_mut(key).map(f)
    }

    /// Forgets a SecretRef that is gone (its timers are dropped when they come up).
    pub fn forget(&self, key: &str) {
        let mut g = lock(&self.inner);
        if g.states.get(key).is_some_and(|s| !s.queued) {
            g.states.remove(key);
        }
    }

    /// Queues `key` for a reconcile (a no-op while it is queued already).
    pub fn enqueue(&self, key: &str) {
        if lock(&self.inner).enqueue(key) {
            self.fed.notify_one();
        }
    }

    /// Queues every key of `keys`.
    pub fn enqueue_all<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        let mut any = false;
        {
            let mut g = lock(&self.inner);
            for k in keys {
                any |= g.enqueue(k);
            }
        }
        if any {
            self.fed.notify_one();
        }
    }

    /// Queues `key` once `after` has passed, replacing its previous timer.
    pub fn schedule(&self, key: &str, after: Duration) {
        let at = Instant::now() + after;
        let mut g = lock(&self.inner);
        let (k, s) = g.entry(key);
        if s.timer_at == Some(at) {
            return;
        }
        s.timer_at = Some(at);
        let earliest = g.timers.peek().is_none_or(|Reverse((t, _))| at < *t);
        g.timers.push(Reverse((at, k)));
        drop(g);
        if earliest {
            self.timers_changed.notify_one();
        }
    }

    /// Drops the timer of `key` (it stays in the heap until it comes up, then is ignored).
    pub fn cancel(&self, key: &str) {
        if let Some(s) = lock(&self.inner).states.get_mut(key) {
            s.timer_at = None;
        }
    }

    /// The runner starts a reconcile of `key`: a change from now on queues it again, and its timer
    /// is spent (the reconcile sets the next one, as kube-runtime's requeue did).
    pub fn started(&self, key: &str) {
        if let Some(s) = lock(&self.inner).states.get_mut(key) {
            s.queued = false;
            s.timer_at = None;
        }
    }

    /// The runner is done with a request it got from [`Work::next`] and reconciled. (The key's
    /// queued mark was cleared when the reconcile started; it may be queued again since, and must
    /// stay so: clearing it here would let the key into the FIFO twice.)
    pub fn finished(&self) {
        {
            let mut g = lock(&self.inner);
            g.in_flight = g.in_flight.saturating_sub(1);
        }
        self.fed.notify_one();
    }

    /// The next key for the runner, once one is ready and fewer than `bound` are in its hands.
    pub async fn next(&self) -> Arc<str> {
        loop {
            let fed = self.fed.notified();
            {
                let mut g = lock(&self.inner);
                if g.in_flight < self.bound
                    && let Some(k) = g.ready.pop_front()
                {
                    g.in_flight += 1;
                    let more = g.in_flight < self.bound && !g.ready.is_empty();
                    drop(g);
                    if more {
                        self.fed.notify_one();
                    }
                    return k;
                }
            }
            fed.await;
        }
    }

    /// Moves due timers to the queue; returns when the next one is due.
    fn fire_due(&self, now: Instant) -> Option<Instant> {
        let mut fired = false;
        let mut g = lock(&self.inner);
        while let Some(Reverse((at, _))) = g.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, key))) = g.timers.pop() else {
                break;
            };
            let live = g
                .states
                .get_mut(&*key)
                .filter(|s| s.timer_at == Some(at))
                .map(|s| s.timer_at = None)
                .is_some();
            if live {
                fired |= g.enqueue(&key);
            }
        }
        // Replaced timers pile up only if SecretRefs are rescheduled far more often than they come
        // due; rebuild the heap from the live ones then.
        if g.timers.len() > 2 * g.states.len() + 1024 {
            let live: Vec<_> = g
                .states
                .iter()
                .filter_map(|(k, s)| s.timer_at.map(|t| Reverse((t, k.clone()))))
                .collect();
            g.timers = BinaryHeap::from(live);
        }
        let next = g.timers.peek().map(|Reverse((t, _))| *t);
        drop(g);
        if fired {
            self.fed.notify_one();
        }
        next
    }

    /// Fires timers until `stop` resolves.
    pub async fn run_timers(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let changed = self.timers_changed.notified();
            let next = self.fire_due(Instant::now());
            let sleep = match next {
                Some(t) => tokio::time::sleep_until(t),
                None => tokio::time::sleep(Duration::from_secs(3600)),
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = sleep => {}
                _ = changed => {}
            }
        }
    }

    /// Sizes of the bookkeeping.
    pub fn sizes(&self) -> WorkSizes {
        let g = lock(&self.inner);
        WorkSizes {
            states: g.states.len(),
            ready: g.ready.len(),
            in_flight: g.in_flight,
            timers: g.timers.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_is_queued_once_until_the_runner_starts_it() {
        let w = Work::new(8);
        w.enqueue("ns/a");
        w.enqueue("ns/a");
        w.enqueue("ns/b");
        assert_eq!(&*w.next().await, "ns/a");
        // Queued again only after the runner started it.
        w.enqueue("ns/a");
        assert_eq!(&*w.next().await, "ns/b");
        assert_eq!(w.sizes().ready, 0);
        w.started("ns/a");
        w.enqueue("ns/a");
        assert_eq!(&*w.next().await, "ns/a");
        assert_eq!(w.sizes().in_flight, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_runner_never_holds_more_than_the_bound() {
        let w = Arc::new(Work::new(2));
        for i in 0..5 {
            w.enqueue(&format!("ns/{i}"));
        }
        let a = w.next().await;
        let _b = w.next().await;
        let third = {
            let w = w.clone();
            tokio::spawn(async move { w.next().await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !third.is_finished(),
            "a third request while two are in flight"
        );
        w.finished();
        let _ = a;
        assert_eq!(&*third.await.unwrap(), "ns/2");
        assert_eq!(w.sizes().in_flight, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn timers_fire_once_at_their_latest_time() {
        let w = Arc::new(Work::new(8));
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let timers = {
            let w = w.clone();
            tokio::spawn(async move {
                w.run_timers(async move {
                    let _ = stop_rx.wait_for(|v| *v).await;
                })
                .await
            })
        };
        w.schedule("ns/a", Duration::from_secs(10));
        w.schedule("ns/a", Duration::from_secs(30)); // replaces the first
        w.schedule("ns/b", Duration::from_secs(20));
        w.schedule("ns/gone", Duration::from_secs(5));
        w.forget("ns/gone");
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert_eq!(
            w.sizes().ready,
            0,
            "the replaced and the forgotten timer do not fire"
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(&*w.next().await, "ns/b");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(&*w.next().await, "ns/a");
        assert_eq!(w.sizes().ready, 0);
        assert_eq!(w.sizes().timers, 0);
        // A cancelled timer does not fire.
        w.schedule("ns/b", Duration::from_secs(5));
        w.cancel("ns/b");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(w.sizes().ready, 0);
        stop_tx.send(true).unwrap();
        timers.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn forget_keeps_a_queued_key_until_the_runner_is_done() {
        let w = Work::new(8);
        w.enqueue("ns/a");
        w.forget("ns/a");
        assert_eq!(w.sizes().states, 1, "still queued: kept");
        let k = w.next().await;
        w.started(&k);
        w.finished();
        w.forget(&k);
        assert_eq!(w.sizes().states, 0);
    }

    /// A change that arrives while its SecretRef is being reconciled queues it once more, and the end
    /// of that reconcile does not let it into the FIFO a second time (two hand-overs of one key that
    /// kube-runtime would merge into one reconcile would leak a slot of the bound for good).
    #[tokio::test(start_paused = true)]
    async fn a_change_during_a_reconcile_queues_the_key_exactly_once() {
        let w = Work::new(8);
        w.enqueue("ns/a");
        let k = w.next().await;
        w.started(&k);
        w.enqueue("ns/a"); // a change meanwhile
        w.finished();
        w.enqueue("ns/a"); // and another before the runner takes it again
        assert_eq!(w.sizes().ready, 1, "once in the FIFO");
        let k = w.next().await;
        w.started(&k);
        w.finished();
        assert_eq!(
            w.sizes(),
            WorkSizes {
                states: 1,
                ready: 0,
                in_flight: 0,
                timers: 0
            }
        );
    }
}
