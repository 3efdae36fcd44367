//! The shared fetch layer: one read per (store, remote key, version) per refresh cycle, shared by
//! every SecretRef that needs it; concurrent reads of the same key coalesced into one call; a
//! per-store token bucket that honours provider retry hints.
//!
//! Callers say how old an answer they accept (`max_age`): a periodic refresh accepts a value read
//! earlier in the same cycle by another SecretRef, a force-sync accepts nothing cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::{FetchedSecret, FindQuery, Provider, ProviderError, RemoteRef};

type SharedRead = Shared<BoxFuture<'static, Result<FetchedSecret, ProviderError>>>;

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

struct Cached {
    at: Instant,
    value: FetchedSecret,
}

/// Answer cache and in-flight table, shared by all reconciles.
#[derive(Default)]
pub struct Fetcher {
    cache: Mutex<HashMap<(Arc<str>, RemoteRef), Cached>>,
    inflight: Mutex<HashMap<(Arc<str>, RemoteRef), SharedRead>>,
    calls: std::sync::atomic::AtomicU64,
}

impl Fetcher {
    /// Reads `refs` from `store`, answering from the cache when an answer is at most `max_age` old.
    /// Misses go to the provider in one `get_many` call (batched where the provider supports it).
    /// One failing key never fails the others.
    pub async fn get_many(
        &self,
        store: &StoreHandle,
        refs: &[RemoteRef],
        max_age: Duration,
    ) -> Vec<Result<FetchedSecret, ProviderError>> {
        let mut results: Vec<Option<Result<FetchedSecret, ProviderError>>> = vec![None; refs.len()];
        let mut waits: Vec<(usize, SharedRead)> = Vec::new();
        let mut misses: Vec<(usize, RemoteRef)> = Vec::new();
        {
            let cache = lock(&self.cache);
            let inflight = lock(&self.inflight);
            for (i, r) in refs.iter().enumerate() {
                let k = (store.id.clone(), r.clone());
                if let Some(c) = cache.get(&k)
                    && c.at.elapsed() <= max_age
                {
                    results[i] = Some(Ok(c.value.clone()));
                } else if let Some(f) = inflight.get(&k) {
                    waits.push((i, f.clone()));
                } else {
                    misses.push((i, r.clone()));
                }
            }
        }
        if !misses.is_empty() {
            let batch: Vec<RemoteRef> = misses.iter().map(|(_, r)| r.clone()).collect();
            let store2 = store.clone();
            let batch_fut = async move {
                store2.limiter.acquire().await;
                let out = store2.provider.get_many(&batch).await;
                if let Some(ra) = out
                    .iter()
                    .find_map(|r| r.as_ref().err().and_then(ProviderError::retry_after))
                {
                    store2.limiter.pause_for(ra);
                }
                Arc::new(out)
            }
            .boxed()
            .shared();
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            {
                let mut inflight = lock(&self.inflight);
                for (pos, (i, r)) in misses.iter().enumerate() {
                    let bf = batch_fut.clone();
                    let one: SharedRead = async move {
                        let all = bf.await;
                        all.get(pos).cloned().unwrap_or_else(|| {
                            Err(ProviderError::Transient {
                                message: "provider returned too few answers".into(),
                            })
                        })
                    }
                    .boxed()
                    .shared();
                    inflight.insert((store.id.clone(), r.clone()), one.clone());
                    waits.push((*i, one));
                }
            }
        }
        for (i, f) in waits {
            let r = f.await;
            results[i] = Some(r);
        }
        // Store fresh successes, clear in-flight entries we created.
        {
            let mut cache = lock(&self.cache);
            let mut inflight = lock(&self.inflight);
            for (i, r) in refs.iter().enumerate() {
                let k = (store.id.clone(), r.clone());
                if misses.iter().any(|(mi, _)| *mi == i) {
                    inflight.remove(&k);
                    if let Some(Ok(v)) = &results[i] {
                        cache.insert(
                            k,
                            Cached {
                                at: Instant::now(),
                                value: v.clone(),
                            },
                        );
                    }
                }
            }
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

    /// Runs a search (not cached: searches are cheap list calls and their results change).
    pub async fn find(
        &self,
        store: &StoreHandle,
        query: &FindQuery,
    ) -> Result<Vec<String>, ProviderError> {
        store.limiter.acquire().await;
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let r = store.provider.find(query).await;
        if let Err(e) = &r
            && let Some(ra) = e.retry_after()
        {
            store.limiter.pause_for(ra);
        }
        r
    }

    /// Drops cached answers of stores other than the given live ones (bounded memory).
    pub fn retain_stores(&self, live: &dyn Fn(&str) -> bool) {
        lock(&self.cache).retain(|(id, _), _| live(id));
    }

    /// Drops cached answers older than `max_age`.
    pub fn expire(&self, max_age: Duration) {
        lock(&self.cache).retain(|_, c| c.at.elapsed() <= max_age);
    }

    /// Provider calls made so far (reads batches plus searches).
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A token bucket: `qps` sustained, `burst` at once; a provider's retry hint pauses it.
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<BucketState>,
}

struct BucketState {
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
}

impl TokenBucket {
    /// A bucket; `qps <= 0` means unlimited.
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps,
            burst,
            state: Mutex::new(BucketState {
                tokens: burst,
                last: Instant::now(),
                paused_until: None,
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
                    let elapsed = now.duration_since(s.last).as_secs_f64();
                    s.tokens = (s.tokens + elapsed * self.qps).min(self.burst);
                    s.last = now;
                    if s.tokens >= 1.0 {
                        s.tokens -= 1.0;
                        None
                    } else {
                        Some(Duration::from_secs_f64((1.0 - s.tokens) / self.qps))
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{ProviderKind, SecretMetadata};
    use crate::value::SecretBytes;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        calls: AtomicUsize,
        keys: AtomicUsize,
    }

    #[async_trait]
    impl Provider for Counting {
        fn kind(&self) -> ProviderKind {
            ProviderKind::Fake
        }
        async fn get(&self, r: &RemoteRef) -> Result<FetchedSecret, ProviderError> {
            Ok(self.get_many(std::slice::from_ref(r)).await.remove(0)?)
        }
        async fn get_many(&self, refs: &[RemoteRef]) -> Vec<Result<FetchedSecret, ProviderError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.keys.fetch_add(refs.len(), Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            refs.iter()
                .map(|r| {
                    if r.key == "missing" {
                        Err(ProviderError::NotFound { key: r.key.clone() })
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
        let p = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            keys: AtomicUsize::new(0),
        });
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
        assert_eq!(p.calls.load(Ordering::SeqCst), 1);
        // Within max_age: served from the cache; with max_age 0: a new read.
        f.get_many(&h, &[RemoteRef::latest("a")], Duration::from_secs(60))
            .await;
        assert_eq!(p.calls.load(Ordering::SeqCst), 1);
        f.get_many(&h, &[RemoteRef::latest("a")], Duration::ZERO)
            .await;
        assert_eq!(p.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn one_missing_key_does_not_fail_the_others() {
        let p = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            keys: AtomicUsize::new(0),
        });
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
        assert_eq!(p.calls.load(Ordering::SeqCst), 1, "one batched call");
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
}
