//! The shared fetch layer: one read per (store, remote key, version) per refresh cycle, shared by
//! every SecretRef that needs it.
//!
//! - **Cache.** Callers say how old an answer they accept (`max_age`): a periodic refresh accepts a
//!   value read earlier in the same cycle by another SecretRef, a force-sync accepts nothing cached.
//! - **Coalescing.** A key already being read is not read again: later callers wait for that read.
//! - **Batching across callers.** Misses of one store are collected for a short window
//!   ([`FetchSettings::batch_window`], 20 ms) and sent as one provider `get_many` call; the batch is
//!   sent at once when it reaches the provider's [`Provider::max_batch`] (20 for AWS
//!   `BatchGetSecretValue`). Providers without a batch API (`max_batch() == 1`) skip the window.
//! - **Refresh-ahead.** A batch call with room left is filled up to `max_batch` with other keys of the
//!   same store whose cached answers are the oldest (only keys some SecretRef asked for since they were
//!   last read, and at least half a cycle old). The call costs the same, and those keys will not need
//!   a call of their own when their SecretRefs come due: with refreshes spread over the interval, a
//!   store's keys are refreshed in full batches instead of one call per key.
//! - **Retries.** Only transient errors and throttling are retried, with exponential backoff and jitter,
//!   at most [`RetryPolicy::max_attempts`] calls per read (2: a failing key costs at most twice its
//!   normal calls per reconcile; the controller's own requeue backoff does the rest). Not-found, access
//!   denied and invalid answers are final.
//! - **Rate limits.** Every provider call takes a token from the store's [`TokenBucket`]; throttling
//!   pauses the bucket for the provider's retry hint and halves its rate for a minute.
//!
//! Metrics hook: every provider call is reported to an optional [`CallObserver`]
//! ([`Fetcher::set_observer`]) with its operation, size, outcome and latency; [`Fetcher::calls`]
//! counts them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::{FetchedSecret, FindQuery, Provider, ProviderError, ProviderKind, RemoteRef};

type ReadResult = Result<FetchedSecret, ProviderError>;
type BatchAnswer = Option<Arc<Vec<ReadResult>>>;
type Key = (Arc<str>, RemoteRef);

/// A provider plus the identity of the store generation it was built from.
#[derive(Clone)]
pub struct StoreHandle {
    /// Identity of the store and its configuration (uid + resourceVersion of the spec and credentials):
    /// a changed store never reuses answers of the old one.
    pub id: Arc<str>,
    /// The provider.
    pub provider: Arc<dyn Provider>,
    /// The store's call budget.
    pub limiter: Arc<TokenBucket>,
}

/// How the fetch layer retries failed provider calls.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Provider calls per read at most, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubled for each further one, with jitter.
    pub base_delay: Duration,
    /// The longest wait inside one read. A provider retry hint beyond it is not waited for: the read
    /// fails as throttled and the controller requeues (the bucket still pauses for the whole hint).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 2,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): `base * 2^(retry-1)`, jittered to 50–100 %,
    /// capped at `max_delay`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max_delay);
        exp.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }
}

/// Tuning of the fetch layer.
#[derive(Clone, Debug)]
pub struct FetchSettings {
    /// How long misses of one store are collected before a batch call (providers with `max_batch() > 1`).
    pub batch_window: Duration,
    /// Retries of transient errors and throttling.
    pub retry: RetryPolicy,
    /// Fill batch calls with the oldest cached keys of the same store.
    pub refresh_ahead: bool,
    /// Cached answers nobody asked for in this long are dropped.
    pub idle_ttl: Duration,
    /// Most bytes of values the cache holds; beyond, the least recently asked-for answers go
    /// (they are read again when asked for).
    pub max_cached_bytes: usize,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            batch_window: Duration::from_millis(20),
            retry: RetryPolicy::default(),
            refresh_ahead: true,
            idle_ttl: Duration::from_secs(26 * 3600),
            max_cached_bytes: 64 << 20,
        }
    }
}

/// What one provider call did: the hook for provider metrics.
#[derive(Clone, Debug)]
pub struct CallOutcome {
    /// The provider.
    pub provider: ProviderKind,
    /// `read` (a `get_many` call) or `find`.
    pub operation: &'static str,
    /// Keys in the call (reads), 0 for a search.
    pub keys: usize,
    /// Of those, keys added by refresh-ahead.
    pub refreshed_ahead: usize,
    /// 1 for the first call of a read, 2 for its retry, ...
    pub attempt: u32,
    /// Keys that failed.
    pub failed: usize,
    /// The reason of the most significant failure ([`ProviderError::reason`]), `None` if all succeeded.
    pub error: Option<crate::api::Reason>,
    /// How long the call took.
    pub elapsed: Duration,
}

/// Receives every provider call's outcome (metrics).
pub trait CallObserver: Send + Sync {
    /// One provider call finished.
    fn on_call(&self, outcome: &CallOutcome);
}

struct Cached {
    /// When the value was read.
    at: Instant,
    /// When a caller last asked for it.
    used: Instant,
    /// The times between the last three requests, newest first (a periodic SecretRef's refresh
    /// interval, or the spacing of several SecretRefs sharing the key): they predict the next
    /// request for refresh-ahead.
    gaps: [Option<Duration>; 2],
    value: FetchedSecret,
}

/// Requests of one key closer together than this are one use (one reconcile, or one burst).
const SAME_USE: Duration = Duration::from_secs(1);

/// A read that is being answered by batch `batch`, at position `pos`.
#[derive(Clone)]
struct Pending {
    batch: u64,
    rx: watch::Receiver<BatchAnswer>,
    pos: usize,
}

struct Collecting {
    refs: Vec<RemoteRef>,
    max_age: Duration,
    rx: watch::Receiver<BatchAnswer>,
    full: Arc<Notify>,
}

#[derive(Default)]
struct State {
    cache: HashMap<Key, Cached>,
    /// Bytes of the values in `cache`.
    cached_bytes: usize,
    inflight: HashMap<Key, Pending>,
    /// Batches still collecting or not yet started, by id.
    batches: HashMap<u64, Collecting>,
    /// The batch of each store that still takes keys.
    open: HashMap<Arc<str>, u64>,
    last_sweep: Option<Instant>,
}

struct Inner {
    settings: FetchSettings,
    state: Mutex<State>,
    calls: AtomicU64,
    next_batch: AtomicU64,
    observer: OnceLock<Arc<dyn CallObserver>>,
}

/// Answer cache, in-flight table and batcher, shared by all reconciles (cheap to clone).
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

/// What one cached answer costs (its value and its key).
fn entry_bytes(k: &Key, c: &Cached) -> usize {
    c.value.value.len() + k.0.len() + k.1.key.len()
}

impl State {
    /// Caches an answer, then evicts the least recently asked-for answers beyond `max_bytes`.
    fn cache_answer(&mut self, k: Key, c: Cached, max_bytes: usize) {
        self.cached_bytes += entry_bytes(&k, &c);
        if let Some(old) = self.cache.insert(k.clone(), c) {
            self.cached_bytes = self.cached_bytes.saturating_sub(entry_bytes(&k, &old));
        }
        if self.cached_bytes > max_bytes {
            let mut by_use: Vec<(Instant, Key)> = self
                .cache
                .iter()
                .map(|(k, c)| (c.used, k.clone()))
                .collect();
            by_use.sort();
            for (_, k) in by_use {
                if self.cached_bytes <= max_bytes * 3 / 4 {
                    break;
                }
                self.uncache(&k);
            }
        }
    }

    fn uncache(&mut self, k: &Key) {
        if let Some(old) = self.cache.remove(k) {
            self.cached_bytes = self.cached_bytes.saturating_sub(entry_bytes(k, &old));
        }
    }

    /// Keeps the answers `keep` says yes to.
    fn retain_answers(&mut self, keep: impl Fn(&Key, &Cached) -> bool) {
        self.cache.retain(|k, c| keep(k, c));
        self.cached_bytes = self.cache.iter().map(|(k, c)| entry_bytes(k, c)).sum();
    }
}

impl Default for Fetcher {
    fn default() -> Self {
        Self::new(FetchSettings::default())
    }
}

impl Fetcher {
    /// A fetch layer with these settings.
    pub fn new(settings: FetchSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                state: Mutex::new(State::default()),
                calls: AtomicU64::new(0),
                next_batch: AtomicU64::new(1),
                observer: OnceLock::new(),
            }),
        }
    }

    /// Installs the metrics hook (once; later calls are ignored).
    pub fn set_observer(&self, observer: Arc<dyn CallObserver>) {
        let _ = self.inner.observer.set(observer);
    }

    /// Reads `refs` from `store`, answering from the cache when an answer is at most `max_age` old.
    /// Misses join the store's current batch (see the module docs). The answer has one entry per
    /// input, in order; one failing key never fails the others.
    pub async fn get_many(
        &self,
        store: &StoreHandle,
        refs: &[RemoteRef],
        max_age: Duration,
    ) -> Vec<ReadResult> {
        let mut results: Vec<Option<ReadResult>> = vec![None; refs.len()];
        let mut waits: Vec<(usize, Pending)> = Vec::new();
        {
            let now = Instant::now();
            let mut st = lock(&self.inner.state);
            self.inner.sweep(&mut st, now);
            for (i, r) in refs.iter().enumerate() {
                let k: Key = (store.id.clone(), r.clone());
                if let Some(c) = st.cache.get_mut(&k) {
                    let since = now.saturating_duration_since(c.used);
                    if since >= SAME_USE {
                        c.gaps = [Some(since), c.gaps[0]];
                        c.used = now;
                    }
                    if now.saturating_duration_since(c.at) <= max_age {
                        results[i] = Some(Ok(c.value.clone()));
                        continue;
                    }
                }
                if let Some(p) = st.inflight.get(&k) {
                    waits.push((i, p.clone()));
                    continue;
                }
                let p = Inner::enqueue(&self.inner, &mut st, store, r.clone(), max_age);
                st.inflight.insert(k, p.clone());
                waits.push((i, p));
            }
        }
        let answers = futures::future::join_all(
            waits
                .into_iter()
                .map(|(i, p)| async move { (i, p.wait().await) }),
        )
        .await;
        for (i, r) in answers {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ProviderError::Transient {
                        message: "read did not complete".into(),
                    })
                })
            })
            .collect()
    }

    /// Runs a search (not cached: searches are list calls and their results change), retrying
    /// transient errors like reads.
    pub async fn find(
        &self,
        store: &StoreHandle,
        query: &FindQuery,
    ) -> Result<Vec<String>, ProviderError> {
        let policy = &self.inner.settings.retry;
        let mut attempt = 1;
        loop {
            store.limiter.acquire().await;
            let started = Instant::now();
            let r = store.provider.find(query).await;
            self.inner.record(CallOutcome {
                provider: store.provider.kind(),
                operation: "find",
                keys: 0,
                refreshed_ahead: 0,
                attempt,
                failed: usize::from(r.is_err()),
                error: r.as_ref().err().map(ProviderError::reason),
                elapsed: started.elapsed(),
            });
            let e = match r {
                Ok(v) if v.len() > super::MAX_FIND_RESULTS => {
                    return Err(ProviderError::InvalidConfig {
                        message: format!(
                            "find matched {} keys, more than {}: narrow it (path, name.regexp, tags)",
                            v.len(),
                            super::MAX_FIND_RESULTS
                        ),
                    });
                }
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if matches!(e, ProviderError::Throttled { .. }) {
                store.limiter.throttled(e.retry_after());
            }
            if !e.is_retryable() || attempt >= policy.max_attempts {
                return Err(e);
            }
            let wait = e.retry_after().unwrap_or_else(|| policy.backoff(attempt));
            if wait > policy.max_delay {
                return Err(e);
            }
            if !matches!(e, ProviderError::Throttled { .. }) {
                tokio::time::sleep(wait).await;
            }
            attempt += 1;
        }
    }

    /// Drops cached answers of stores other than the given live ones (bounded memory).
    pub fn retain_stores(&self, live: &dyn Fn(&str) -> bool) {
        lock(&self.inner.state).retain_answers(|(id, _), _| live(id));
    }

    /// Drops the cached answers of these store generations (deleted stores, replaced
    /// configurations: see [`StoreHandle::id`]).
    pub fn forget_stores(&self, ids: &[Arc<str>]) {
        if ids.is_empty() {
            return;
        }
        lock(&self.inner.state).retain_answers(|(id, _), _| !ids.contains(id));
    }

    /// Drops cached answers older than `max_age`.
    pub fn expire(&self, max_age: Duration) {
        let now = Instant::now();
        lock(&self.inner.state)
            .retain_answers(|_, c| now.saturating_duration_since(c.at) <= max_age);
    }

    /// Bytes of the values cached (all stores).
    pub fn cached_bytes(&self) -> usize {
        lock(&self.inner.state).cached_bytes
    }

    /// Provider calls made so far (every read batch call, retries included, plus searches).
    pub fn calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// Cached answers held (all stores).
    pub fn cached(&self) -> usize {
        lock(&self.inner.state).cache.len()
    }
}

impl Pending {
    async fn wait(mut self) -> ReadResult {
        let answer = self.rx.wait_for(Option::is_some).await;
        match answer.as_deref().ok().and_then(Option::as_ref) {
            Some(all) => all.get(self.pos).cloned().unwrap_or_else(|| {
                Err(ProviderError::Transient {
                    message: "provider returned too few answers".into(),
                })
            }),
            None => Err(ProviderError::Transient {
                message: "read abandoned (shutting down)".into(),
            }),
        }
    }
}

impl Inner {
    fn record(&self, outcome: CallOutcome) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(o) = self.observer.get() {
            o.on_call(&outcome);
        }
    }

    /// Drops long-unused answers, at most once a minute.
    fn sweep(&self, st: &mut State, now: Instant) {
        if st
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(60))
        {
            return;
        }
        st.last_sweep = Some(now);
        let ttl = self.settings.idle_ttl;
        st.retain_answers(|_, c| now.saturating_duration_since(c.used) <= ttl);
    }

    /// Adds a miss to the store's open batch (opening one, and starting its driver, if needed).
    fn enqueue(
        this: &Arc<Self>,
        st: &mut State,
        store: &StoreHandle,
        r: RemoteRef,
        max_age: Duration,
    ) -> Pending {
        let max_batch = store.provider.max_batch().max(1);
        if max_batch > 1
            && let Some(&id) = st.open.get(&store.id)
            && let Some(b) = st.batches.get_mut(&id)
            && b.refs.len() < max_batch
        {
            b.refs.push(r);
            b.max_age = b.max_age.max(max_age);
            let p = Pending {
                batch: id,
                rx: b.rx.clone(),
                pos: b.refs.len() - 1,
            };
            if b.refs.len() >= max_batch {
                b.full.notify_one();
                st.open.remove(&store.id);
            }
            return p;
        }
        let id = this.next_batch.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        let full = Arc::new(Notify::new());
        st.batches.insert(
            id,
            Collecting {
                refs: vec![r],
                max_age,
                rx: rx.clone(),
                full: full.clone(),
            },
        );
        // Providers without a batch API pay one call per key anyway: no window, one read per key
        // (concurrently, each with its own token).
        let window = if max_batch > 1 {
            st.open.insert(store.id.clone(), id);
            this.settings.batch_window
        } else {
            Duration::ZERO
        };
        tokio::spawn(Self::drive(
            this.clone(),
            store.clone(),
            id,
            window,
            full,
            tx,
        ));
        Pending {
            batch: id,
            rx,
            pos: 0,
        }
    }

    /// One batch: wait for the window (or a full batch), add refresh-ahead keys, call the provider
    /// (with retries), publish the answers to the cache and to the waiting callers.
    async fn drive(
        this: Arc<Self>,
        store: StoreHandle,
        id: u64,
        window: Duration,
        full: Arc<Notify>,
        tx: watch::Sender<BatchAnswer>,
    ) {
        if !window.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(window) => {}
                _ = full.notified() => {}
            }
        }
        let max_batch = store.provider.max_batch().max(1);
        let (refs, demanded) = {
            let mut st = lock(&this.state);
            if st.open.get(&store.id) == Some(&id) {
                st.open.remove(&store.id);
            }
            let Some(b) = st.batches.remove(&id) else {
                return;
            };
            let mut refs = b.refs;
            let demanded = refs.len();
            if this.settings.refresh_ahead && max_batch > 1 && refs.len() < max_batch {
                let now = Instant::now();
                // A key is worth reading now if its cached answer is at least half a `max_age` old
                // (so it is read at most half a cycle early) and its next request is expected
                // within `max_age` (so this answer will still do then): the gap between its last
                // two requests says how often it is asked for (a key shared by several SecretRefs
                // is asked for several times a cycle, at irregular times; one read per cycle serves
                // them all). Oldest answers first: they expire first. Only keys asked for since
                // their last read, so keys nobody uses any more drop out.
                let max_age = b.max_age.max(Duration::from_secs(1));
                let mut candidates: Vec<(Instant, RemoteRef)> = st
                    .cache
                    .iter()
                    .filter(|((sid, r), c)| {
                        *sid == store.id && r.version.is_none() && c.used >= c.at
                    })
                    .filter(|(k, _)| !st.inflight.contains_key(*k))
                    .filter_map(|((_, r), c)| {
                        let old_enough = now.saturating_duration_since(c.at) >= max_age / 2;
                        let asked_again_soon = match c.gaps {
                            [Some(g1), g2] => c.used + g1.min(g2.unwrap_or(g1)) <= now + max_age,
                            _ => true,
                        };
                        (old_enough && asked_again_soon).then(|| (c.at, r.clone()))
                    })
                    .collect();
                candidates.sort();
                for (_, r) in candidates.into_iter().take(max_batch - refs.len()) {
                    st.inflight.insert(
                        (store.id.clone(), r.clone()),
                        Pending {
                            batch: id,
                            rx: b.rx.clone(),
                            pos: refs.len(),
                        },
                    );
                    refs.push(r);
                }
            }
            (refs, demanded)
        };
        let results = this.execute(&store, &refs, demanded).await;
        {
            let now = Instant::now();
            let mut st = lock(&this.state);
            for (pos, (r, res)) in refs.iter().zip(&results).enumerate() {
                let k: Key = (store.id.clone(), r.clone());
                if st.inflight.get(&k).is_some_and(|p| p.batch == id) {
                    st.inflight.remove(&k);
                }
                match res {
                    // Nothing larger than a Secret can hold is ever kept.
                    Ok(v) if v.value.len() > crate::api::MAX_SECRET_BYTES => st.uncache(&k),
                    Ok(v) => {
                        let old = st.cache.get(&k).map(|c| (c.used, c.gaps));
                        let (used, gaps) = match old {
                            Some((used, gaps)) if pos >= demanded => (used, gaps),
                            Some((_, gaps)) => (now, gaps),
                            None => (now, [None, None]),
                        };
                        st.cache_answer(
                            k,
                            Cached {
                                at: now,
                                used,
                                gaps,
                                value: v.clone(),
                            },
                            this.settings.max_cached_bytes,
                        );
                    }
                    // An authoritative answer replaces what was cached; a transient one does not.
                    Err(e) if !e.is_retryable() => st.uncache(&k),
                    Err(_) => {}
                }
            }
        }
        let _ = tx.send(Some(Arc::new(results)));
    }

    /// Calls the provider for `refs`, retrying transient failures of the first `demanded` refs
    /// (refresh-ahead keys are speculative and never retried).
    async fn execute(
        &self,
        store: &StoreHandle,
        refs: &[RemoteRef],
        demanded: usize,
    ) -> Vec<ReadResult> {
        let policy = &self.settings.retry;
        let mut results: Vec<Option<ReadResult>> = vec![None; refs.len()];
        let mut todo: Vec<usize> = (0..refs.len()).collect();
        let mut attempt = 1;
        while !todo.is_empty() {
            store.limiter.acquire().await;
            let batch: Vec<RemoteRef> = todo.iter().map(|&i| refs[i].clone()).collect();
            let started = Instant::now();
            let mut out = store.provider.get_many(&batch).await;
            out.resize_with(batch.len(), || {
                Err(ProviderError::Transient {
                    message: "provider returned too few answers".into(),
                })
            });
            let failed = out.iter().filter(|r| r.is_err()).count();
            self.record(CallOutcome {
                provider: store.provider.kind(),
                operation: "read",
                keys: batch.len(),
                refreshed_ahead: todo.iter().filter(|&&i| i >= demanded).count(),
                attempt,
                failed,
                error: most_significant(out.iter().filter_map(|r| r.as_ref().err())),
                elapsed: started.elapsed(),
            });
            let mut retry = Vec::new();
            let mut throttled = false;
            let mut hint: Option<Duration> = None;
            for (&i, res) in todo.iter().zip(out) {
                if let Err(e) = &res {
                    if matches!(e, ProviderError::Throttled { .. }) {
                        throttled = true;
                        hint = hint.max(e.retry_after());
                    }
                    if e.is_retryable() && i < demanded && attempt < policy.max_attempts {
                        retry.push(i);
                    }
                }
                results[i] = Some(res);
            }
            if throttled {
                store.limiter.throttled(hint);
            }
            if retry.is_empty() {
                break;
            }
            let wait = hint.unwrap_or_else(|| policy.backoff(attempt));
            if wait > policy.max_delay {
                break;
            }
            if !throttled {
                // Throttling waits in the bucket (paused for the hint); other errors back off here.
                tokio::time::sleep(wait).await;
            }
            todo = retry;
            attempt += 1;
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ProviderError::Transient {
                        message: "read did not complete".into(),
                    })
                })
            })
            .collect()
    }
}

/// The reason to report for a call with these failures: anything beats not-found.
fn most_significant<'a>(
    errs: impl Iterator<Item = &'a ProviderError>,
) -> Option<crate::api::Reason> {
    let mut best: Option<&ProviderError> = None;
    for e in errs {
        if best.is_none_or(|b| matches!(b, ProviderError::NotFound { .. })) {
            best = Some(e);
        }
    }
    best.map(ProviderError::reason)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A token bucket: `qps` sustained, `burst` at once. A provider's retry hint pauses it, and
/// throttling halves its rate (down to 1/16), recovering linearly over a minute.
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<BucketState>,
}

struct BucketState {
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
    slow: f64,
    slow_at: Instant,
}

impl BucketState {
    /// The rate factor now: `slow` right after throttling, back to 1 a minute later.
    fn factor(&self, now: Instant) -> f64 {
        let recovered = now.saturating_duration_since(self.slow_at).as_secs_f64() / 60.0;
        (self.slow + recovered).min(1.0)
    }
}

impl TokenBucket {
    /// How long throttling without a retry hint pauses the bucket.
    pub const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_secs(1);

    /// A bucket; `qps <= 0` means unlimited.
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        let now = Instant::now();
        Self {
            qps,
            burst,
            state: Mutex::new(BucketState {
                tokens: burst,
                last: now,
                paused_until: None,
                slow: 1.0,
                slow_at: now,
            }),
        }
    }

    /// An unlimited bucket.
    pub fn unlimited() -> Self {
        Self::new(0.0, 1)
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut s = lock(&self.state);
                let now = Instant::now();
                if let Some(p) = s.paused_until {
                    if p > now {
                        Some(p - now)
                    } else {
                        s.paused_until = None;
                        None
                    }
                } else {
                    None
                }
                .or_else(|| {
                    if self.qps <= 0.0 {
                        return None;
                    }
                    let qps = self.qps * s.factor(now);
                    let elapsed = now.duration_since(s.last).as_secs_f64();
                    s.tokens = (s.tokens + elapsed * qps).min(self.burst);
                    s.last = now;
                    if s.tokens >= 1.0 {
                        s.tokens -= 1.0;
                        None
                    } else {
                        Some(Duration::from_secs_f64((1.0 - s.tokens) / qps))
                    }
                })
            };
            match wait {
                None => return,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
    }

    /// Stops handing out tokens for `d` (a provider's `Retry-After`), capped at 5 minutes.
    pub fn pause_for(&self, d: Duration) {
        let until = Instant::now() + d.min(Duration::from_secs(300));
        let mut s = lock(&self.state);
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
    }

    /// The provider throttled us: pause for its hint (or [`Self::DEFAULT_THROTTLE_PAUSE`]), drop the
    /// saved-up burst and halve the rate.
    pub fn throttled(&self, retry_after: Option<Duration>) {
        self.pause_for(retry_after.unwrap_or(Self::DEFAULT_THROTTLE_PAUSE));
        let now = Instant::now();
        let mut s = lock(&self.state);
        s.slow = (s.factor(now) / 2.0).max(1.0 / 16.0);
        s.slow_at = now;
        s.tokens = s.tokens.min(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{ProviderKind, SecretMetadata};
    use crate::value::SecretBytes;
    use async_trait::async_trait;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicUsize;

    /// A provider that counts calls; keys named `missing*` are not found, `denied*` access denied,
    /// `flaky*` fail transiently `fail_first` times, `throttled*` are throttled `fail_first` times.
    struct Counting {
        calls: AtomicUsize,
        keys: AtomicUsize,
        max_batch: usize,
        fail_first: usize,
        failures: AtomicUsize,
        sizes: Mutex<Vec<usize>>,
        delay: Duration,
    }

    impl Counting {
        fn new(max_batch: usize) -> Arc<Self> {
            Arc::new(Self {
                calls: AtomicUsize::new(0),
                keys: AtomicUsize::new(0),
                max_batch,
                fail_first: 0,
                failures: AtomicUsize::new(0),
                sizes: Mutex::new(Vec::new()),
                delay: Duration::from_millis(20),
            })
        }
        fn failing(max_batch: usize, fail_first: usize) -> Arc<Self> {
            Arc::new(Self {
                fail_first,
                ..Arc::into_inner(Self::new(max_batch)).unwrap()
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl Provider for Counting {
        fn kind(&self) -> ProviderKind {
            ProviderKind::Fake
        }
        fn max_batch(&self) -> usize {
            self.max_batch
        }
        async fn get(&self, r: &RemoteRef) -> Result<FetchedSecret, ProviderError> {
            self.get_many(std::slice::from_ref(r)).await.remove(0)
        }
        async fn get_many(&self, refs: &[RemoteRef]) -> Vec<Result<FetchedSecret, ProviderError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.keys.fetch_add(refs.len(), Ordering::SeqCst);
            lock(&self.sizes).push(refs.len());
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let fail_now = self.failures.fetch_add(1, Ordering::SeqCst) < self.fail_first;
            refs.iter()
                .map(|r| {
                    if r.key.starts_with("missing") {
                        Err(ProviderError::NotFound { key: r.key.clone() })
                    } else if r.key.starts_with("denied") {
                        Err(ProviderError::AccessDenied {
                            key: Some(r.key.clone()),
                            message: "AccessDeniedException".into(),
                        })
                    } else if r.key.starts_with("flaky") && fail_now {
                        Err(ProviderError::Transient {
                            message: "HTTP 503".into(),
                        })
                    } else if r.key.starts_with("throttled") && fail_now {
                        Err(ProviderError::Throttled {
                            retry_after: Some(Duration::from_secs(2)),
                        })
                    } else {
                        Ok(FetchedSecret {
                            value: SecretBytes::from(r.key.as_str()),
                            meta: SecretMetadata::default(),
                        })
                    }
                })
                .collect()
        }
        async fn find(&self, _: &FindQuery) -> Result<Vec<String>, ProviderError> {
            Ok(vec![])
        }
        async fn validate(&self) -> Result<(), ProviderError> {
            Ok(())
        }
    }

    fn handle(p: Arc<Counting>) -> StoreHandle {
        StoreHandle {
            id: Arc::from("store-1"),
            provider: p,
            limiter: Arc::new(TokenBucket::unlimited()),
        }
    }

    #[tokio::test]
    async fn concurrent_reads_of_one_key_are_coalesced_and_cached() {
        let p = Counting::new(1);
        let f = Arc::new(Fetcher::default());
        let h = handle(p.clone());
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (f, h) = (f.clone(), h.clone());
            tasks.push(tokio::spawn(async move {
                f.get_many(&h, &[RemoteRef::latest("a")], Duration::from_secs(60))
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap()[0].as_ref().unwrap().value.expose(), b"a");
        }
        assert_eq!(p.calls(), 1);
        // Within max_age: served from the cache; with max_age 0: a new read.
        f.get_many(&h, &[RemoteRef::latest("a")], Duration::from_secs(60))
            .await;
        assert_eq!(p.calls(), 1);
        f.get_many(&h, &[RemoteRef::latest("a")], Duration::ZERO)
            .await;
        assert_eq!(p.calls(), 2);
    }

    #[tokio::test]
    async fn one_missing_key_does_not_fail_the_others() {
        for max_batch in [1, 20] {
            let p = Counting::new(max_batch);
            let f = Fetcher::default();
            let out = f
                .get_many(
                    &handle(p.clone()),
                    &[
                        RemoteRef::latest("a"),
                        RemoteRef::latest("missing"),
                        RemoteRef::latest("b"),
                    ],
                    Duration::ZERO,
                )
                .await;
            assert!(out[0].is_ok() && out[2].is_ok());
            assert!(matches!(out[1], Err(ProviderError::NotFound { .. })));
            // A batch API answers all three in one call; without one, one read per key.
            let expected = if max_batch > 1 { 1 } else { 3 };
            assert_eq!(p.calls(), expected);
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_batches_of_at_most_max_batch() {
        let p = Counting::new(20);
        let f = Arc::new(Fetcher::default());
        let h = handle(p.clone());
        // 60 callers over 45 distinct keys, each asking for one or two keys.
        let mut tasks = Vec::new();
        for i in 0..60 {
            let (f, h) = (f.clone(), h.clone());
            tasks.push(tokio::spawn(async move {
                let mut refs = vec![RemoteRef::latest(format!("k{}", i % 45))];
                if i % 3 == 0 {
                    refs.push(RemoteRef::latest(format!("k{}", (i + 7) % 45)));
                }
                let out = f.get_many(&h, &refs, Duration::from_secs(60)).await;
                for (r, o) in refs.iter().zip(out) {
                    assert_eq!(o.unwrap().value.expose(), r.key.as_bytes());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(p.calls(), 3, "ceil(45/20) calls: {:?}", lock(&p.sizes));
        assert_eq!(p.keys.load(Ordering::SeqCst), 45, "each key read once");
        assert!(lock(&p.sizes).iter().all(|&n| n <= 20));
    }

    #[tokio::test]
    async fn a_full_batch_goes_out_before_the_window_ends() {
        let p = Counting::new(20);
        let f = Fetcher::new(FetchSettings {
            batch_window: Duration::from_secs(30),
            ..FetchSettings::default()
        });
        let refs: Vec<RemoteRef> = (0..20)
            .map(|i| RemoteRef::latest(format!("k{i}")))
            .collect();
        let out = tokio::time::timeout(
            Duration::from_secs(5),
            f.get_many(&handle(p.clone()), &refs, Duration::ZERO),
        )
        .await
        .expect("a full batch does not wait for the window");
        assert!(out.iter().all(Result::is_ok));
        assert_eq!(p.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_once_with_backoff() {
        let p = Counting::failing(20, 1);
        let f = Fetcher::default();
        let start = Instant::now();
        let out = f
            .get_many(
                &handle(p.clone()),
                &[RemoteRef::latest("flaky"), RemoteRef::latest("ok")],
                Duration::ZERO,
            )
            .await;
        assert!(out.iter().all(Result::is_ok));
        assert_eq!(p.calls(), 2, "first call + one retry");
        assert_eq!(
            lock(&p.sizes).as_slice(),
            &[2, 1],
            "only the failed key is retried"
        );
        assert!(start.elapsed() >= Duration::from_millis(125), "backed off");

        // A key that keeps failing costs exactly max_attempts calls, then surfaces the error.
        let p = Counting::failing(20, usize::MAX);
        let f = Fetcher::default();
        let out = f
            .get_many(
                &handle(p.clone()),
                &[RemoteRef::latest("flaky")],
                Duration::ZERO,
            )
            .await;
        assert!(matches!(out[0], Err(ProviderError::Transient { .. })));
        assert_eq!(p.calls(), 2);
        assert_eq!(f.calls(), 2);
    }

    #[tokio::test]
    async fn not_found_and_access_denied_are_never_retried() {
        let p = Counting::failing(20, usize::MAX);
        let f = Fetcher::default();
        let out = f
            .get_many(
                &handle(p.clone()),
                &[RemoteRef::latest("missing"), RemoteRef::latest("denied")],
                Duration::ZERO,
            )
            .await;
        assert!(matches!(out[0], Err(ProviderError::NotFound { .. })));
        assert!(matches!(out[1], Err(ProviderError::AccessDenied { .. })));
        assert_eq!(p.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_pauses_the_bucket_for_the_hint_then_retries() {
        let p = Counting::failing(20, 1);
        let f = Fetcher::default();
        let h = StoreHandle {
            limiter: Arc::new(TokenBucket::new(50.0, 100)),
            ..handle(p.clone())
        };
        let start = Instant::now();
        let out = f
            .get_many(&h, &[RemoteRef::latest("throttled")], Duration::ZERO)
            .await;
        assert!(out[0].is_ok());
        assert_eq!(p.calls(), 2);
        assert!(
            start.elapsed() >= Duration::from_secs(2),
            "waited for Retry-After"
        );

        // A hint longer than the retry budget is not waited for inside the read.
        let p = Counting::failing(20, 1);
        let f = Fetcher::new(FetchSettings {
            retry: RetryPolicy {
                max_delay: Duration::from_secs(1),
                ..RetryPolicy::default()
            },
            ..FetchSettings::default()
        });
        let h = StoreHandle {
            limiter: Arc::new(TokenBucket::new(50.0, 100)),
            ..handle(p.clone())
        };
        let out = f
            .get_many(&h, &[RemoteRef::latest("throttled")], Duration::ZERO)
            .await;
        assert!(matches!(out[0], Err(ProviderError::Throttled { .. })));
        assert_eq!(p.calls(), 1);
        // ...but the bucket is paused for it.
        let start = Instant::now();
        h.limiter.acquire().await;
        assert!(start.elapsed() >= Duration::from_millis(1900));
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_ahead_fills_batches_with_the_oldest_demanded_keys() {
        let p = Counting::new(20);
        let f = Fetcher::default();
        let h = handle(p.clone());
        let hour = Duration::from_secs(3600);
        let cycle = Duration::from_secs(3500);
        // 30 keys read one by one, a minute apart.
        for i in 0..30 {
            f.get_many(&h, &[RemoteRef::latest(format!("k{i}"))], cycle)
                .await;
            tokio::time::advance(Duration::from_secs(60)).await;
        }
        assert_eq!(p.calls(), 30, "nothing old enough to refresh ahead yet");
        assert!(lock(&p.sizes).iter().all(|&n| n == 1));
        // An hour after it was read k0 is due again: its call also refreshes the 19 oldest others.
        tokio::time::advance(Duration::from_secs(1800)).await;
        f.get_many(&h, &[RemoteRef::latest("k0")], cycle).await;
        assert_eq!(p.calls(), 31);
        assert_eq!(*lock(&p.sizes).last().unwrap(), 20);
        // Half an hour later another miss: k1..k19 were refreshed ahead and nobody has asked for
        // them since, so they are not refreshed again; k0 and k20..k29 are old enough.
        tokio::time::advance(Duration::from_secs(1800)).await;
        f.get_many(&h, &[RemoteRef::latest("new")], cycle).await;
        assert_eq!(p.calls(), 32);
        assert_eq!(*lock(&p.sizes).last().unwrap(), 1 + 1 + 10);
        // k1..k19 come due: answered from the refresh-ahead reads, no call.
        let refs: Vec<RemoteRef> = (1..20)
            .map(|i| RemoteRef::latest(format!("k{i}")))
            .collect();
        let out = f.get_many(&h, &refs, hour).await;
        assert!(out.iter().all(Result::is_ok));
        assert_eq!(p.calls(), 32);
        // Pinned versions are never refreshed ahead.
        let mut pinned = RemoteRef::latest("k5");
        pinned.version = Some("v1".into());
        f.get_many(&h, &[pinned], hour).await;
        tokio::time::advance(hour).await;
        f.get_many(&h, &[RemoteRef::latest("other")], Duration::ZERO)
            .await;
        assert!(*lock(&p.sizes).last().unwrap() <= 20);
    }

    /// `refs_n` SecretRefs reading key `i % keys_n` once an hour at their slot, each accepting an
    /// answer up to `max_age` old (5 s on its first sync). Slots are spread evenly (the SecretRefs
    /// sharing a key come at equal gaps) or, with `hashed`, by the controller's per-uid jitter (they
    /// come at irregular gaps, as in a cluster). Returns the calls of the first hour and the mean
    /// calls per hour from the third hour on (after the request gaps are learnt).
    async fn simulate(
        refs_n: usize,
        keys_n: usize,
        max_age: Duration,
        refresh_ahead: bool,
        hours: u64,
        hashed: bool,
    ) -> (usize, f64) {
        let p = Arc::new(Counting {
            delay: Duration::ZERO,
            ..Arc::into_inner(Counting::new(20)).unwrap()
        });
        let f = Fetcher::new(FetchSettings {
            refresh_ahead,
            ..FetchSettings::default()
        });
        let h = handle(p.clone());
        let hour = Duration::from_secs(3600);
        let slot = |i: usize| {
            if hashed {
                let next =
                    crate::controller::schedule::until_next_refresh(0, &format!("uid-{i}"), hour);
                hour - next
            } else {
                Duration::from_secs_f64(3600.0 * ((i * 7919) % refs_n) as f64 / refs_n as f64)
            }
        };
        let mut events: Vec<(Duration, usize)> = (0..refs_n).map(|i| (slot(i), i)).collect();
        events.sort();
        let start = Instant::now();
        let mut seen = HashSet::new();
        let (mut first_hour, mut before_steady) = (0, 0);
        for hr in 0..hours {
            if hr == 2 {
                before_steady = p.calls();
            }
            for &(at, i) in &events {
                let t = start + Duration::from_secs(hr * 3600) + at;
                if t > Instant::now() {
                    tokio::time::advance(t - Instant::now()).await;
                }
                let age = if seen.insert(i) {
                    Duration::from_secs(5)
                } else {
                    max_age
                };
                let out = f
                    .get_many(&h, &[RemoteRef::latest(format!("key-{}", i % keys_n))], age)
                    .await;
                assert!(out[0].is_ok());
            }
            if hr == 0 {
                first_hour = p.calls();
            }
        }
        let steady = (p.calls() - before_steady) as f64 / (hours - 2) as f64;
        (first_hour, steady)
    }

    /// G4: 10k SecretRefs on 2k distinct keys of one AWS store, 1 h refresh, refresh slots spread
    /// over the hour: at most 2,600 calls a day. Also prints the figures for other settings.
    #[tokio::test(start_paused = true)]
    async fn refresh_cycle_economy_g4() {
        let hour = Duration::from_secs(3600);
        let mut report = Vec::new();
        for (refs_n, keys_n, label, max_age, refresh_ahead, hashed) in [
            (
                10_000,
                2_000,
                "max_age 0.95 interval",
                hour * 19 / 20,
                true,
                false,
            ),
            (
                10_000,
                2_000,
                "max_age 0.95 interval, uid-hashed slots",
                hour * 19 / 20,
                true,
                true,
            ),
            (10_000, 2_000, "max_age interval/2", hour / 2, true, false),
            (
                10_000,
                2_000,
                "max_age 0.95 interval, no refresh-ahead",
                hour * 19 / 20,
                false,
                false,
            ),
            (60, 45, "max_age 0.95 interval", hour * 19 / 20, true, false),
            (
                60,
                45,
                "max_age 0.95 interval, uid-hashed slots",
                hour * 19 / 20,
                true,
                true,
            ),
            (60, 45, "max_age interval/2", hour / 2, true, false),
        ] {
            let (first, steady) = simulate(refs_n, keys_n, max_age, refresh_ahead, 6, hashed).await;
            let per_day = steady * 24.0;
            report.push(format!(
                "{refs_n} refs on {keys_n} keys, {label}: first hour {first} calls, then {steady:.1}/h = {per_day:.0}/day"
            ));
            if refresh_ahead && max_age > hour / 2 {
                if keys_n == 2_000 {
                    assert!(per_day <= 2_600.0, "G4: {per_day} calls/day");
                } else {
                    assert!(steady <= keys_n.div_ceil(20) as f64 + 1.0, "{steady}/h");
                }
            }
        }
        eprintln!("refresh-cycle economy:\n  {}", report.join("\n  "));
    }

    #[tokio::test(start_paused = true)]
    async fn token_bucket_limits_rate_and_honours_pauses() {
        let b = TokenBucket::new(10.0, 2);
        let start = tokio::time::Instant::now();
        for _ in 0..12 {
            b.acquire().await;
        }
        // 2 from the burst, 10 more at 10/s: about one second.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_millis(1200),
            "{took:?}"
        );
        b.pause_for(Duration::from_secs(5));
        let start = tokio::time::Instant::now();
        b.acquire().await;
        assert!(start.elapsed() >= Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_the_rate_then_recovers() {
        let b = TokenBucket::new(10.0, 1);
        b.acquire().await;
        b.throttled(None);
        let start = Instant::now();
        for _ in 0..5 {
            b.acquire().await;
        }
        // 1 s pause, then 4 more tokens at ~5/s (instead of 10/s).
        assert!(
            start.elapsed() >= Duration::from_millis(1600),
            "{:?}",
            start.elapsed()
        );
        tokio::time::advance(Duration::from_secs(120)).await;
        let start = Instant::now();
        for _ in 0..10 {
            b.acquire().await;
        }
        assert!(
            start.elapsed() <= Duration::from_millis(1100),
            "recovered: {:?}",
            start.elapsed()
        );
    }
}
