//! The SecretRef controller.
//!
//! # The reconcile path
//!
//! ```text
//! run: reflectors for SecretRefs, Secrets, stores, namespaces ── leader (only the lease holder writes)
//!   │   priority::is_urgent: new and changed SecretRefs skip the refresh queue
//!   ▼
//! reconcile::reconcile (finalizer) ─► apply | cleanup                                      IO
//!   1  resolver::StoreResolver::resolve  stores::admit (tenancy) + the store's cached provider
//!   2  schedule::read_gate               read now, or wait for the refresh slot or backoff   pure
//!   3  stores::read::read                the key rule on every read, through providers::fetch
//!   4  read_outcome::fold_reads          complete answers, or the most telling error        pure
//!   5  desired::build                    properties, templates, `validate`, limits → desired pure
//!   6  sync::outcome                     target::decide + conditions + events + audit       pure
//!   7  reconcile::carry_out              write the Secret, audit, restart, events, status    IO
//! ```
//!
//! Beside the path: `context` (state shared by reconciles), `error` (one error enum, its reason and
//! the Kubernetes call that failed), `events` (events within the API server's limits),
//! `store_status` (the `Ready` condition of stores), `restart` (debounced rollouts after a
//! rotation), `property` and `template` (evaluating what `api::syntax` checked).
//!
//! Beside the controller, in cluster scope: `fanout` keeps the SecretRefs of ClusterSecretRefs (one
//! per selected namespace), from its own Namespace and ClusterSecretRef watches and the SecretRef and
//! ClusterSecretStore caches above; only the leader writes.

pub mod cache;
pub mod conditions;
pub mod context;
pub mod desired;
pub mod error;
pub mod events;
pub mod fanout;
pub mod leader;
pub mod priority;
pub mod property;
pub mod queue;
pub mod read_outcome;
pub mod reconcile;
pub mod resolver;
pub mod restart;
pub mod schedule;
pub mod shard;
pub mod store_status;
pub mod sync;
pub mod target;
pub mod template;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, PostParams};
use kube::runtime::events::Reporter;
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

pub use context::{Context, Settings};

use crate::api::{self, ClusterSecretStore, SecretRef, SecretStore, StoreKind};
use crate::audit::HmacKey;
use crate::audit::trail::AuditLog;
use crate::telemetry::Metrics;

/// Key of the HMAC key inside its Secret.
const HMAC_KEY_FIELD: &str = "hmac-key";

/// Waits until the secretsync CRDs are served, saying what to do meanwhile.
pub async fn wait_for_crds(client: &Client, namespace: Option<&str>) {
    let mut delay = Duration::from_secs(1);
    loop {
        let api: Api<SecretRef> = match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => return,
            Err(e) => {
                warn!(error = %error::kube_error_summary(&e), "the secretsync CRDs are not served yet; install them with `kubectl apply --server-side -f crds/` (retrying)");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Loads the HMAC key from its Secret in the controller namespace, creating it on first start.
pub async fn load_or_create_hmac_key(
    client: &Client,
    settings: &Settings,
) -> anyhow::Result<HmacKey> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &settings.controller_namespace);
    for _ in 0..5 {
        if let Some(s) = api.get_opt(&settings.hmac_key_secret).await? {
            let key = s
                .data
                .as_ref()
                .and_then(|d| d.get(HMAC_KEY_FIELD))
                .map(|b| b.0.clone());
            return match key {
                Some(k) if k.len() >= 16 => Ok(HmacKey::new(k)),
                _ => anyhow::bail!(
                    "Secret {}/{} has no usable {HMAC_KEY_FIELD:?} (at least 16 bytes)",
                    settings.controller_namespace,
                    settings.hmac_key_secret
                ),
            };
        }
        let key = HmacKey::random();
        let mut secret = Secret::default();
        secret.metadata.name = Some(settings.hmac_key_secret.clone());
        secret.metadata.labels = Some(BTreeMap::from([(
            api::MANAGED_BY_LABEL.to_string(),
            "secretsync-controller".to_string(),
        )]));
        secret.data = Some(BTreeMap::from([(
            HMAC_KEY_FIELD.to_string(),
            ByteString(key.expose().to_vec()),
        )]));
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                info!(secret = %settings.hmac_key_secret, namespace = %settings.controller_namespace, "created the HMAC key Secret");
                return Ok(key);
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("could not create or read the HMAC key Secret")
}

/// Waits until a reflector has listed everything. Re-checks periodically: a waiter can miss the
/// readiness wake-up of kube-runtime's store (seen about once in thirty starts), while a fresh check
/// after the store became ready always returns at once.
async fn synced<K: kube::Resource + Clone + 'static>(reader: &reflector::Store<K>) -> bool
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(250), reader.wait_until_ready()).await {
            Ok(r) => return r.is_ok(),
            Err(_) => continue,
        }
    }
}

/// Runs the controller until `shutdown` resolves. `ready` turns true once the watches have synced.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    audit: Arc<AuditLog>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let stop = move || {
        let mut rx = shutdown.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    wait_for_crds(&client, settings.namespace.as_deref()).await;
    let hmac = load_or_create_hmac_key(&client, &settings).await?;

    let (srefs, stores, secrets): (
        Api<SecretRef>,
        Api<SecretStore>,
        Api<kube::core::PartialObjectMeta<Secret>>,
    ) = match &settings.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let cluster_stores: Api<ClusterSecretStore> = Api::all(client.clone());

    let (store_reader, store_writer) = reflector::store::<SecretStore>();
    let store_stream = reflector::reflector(
        store_writer,
        watcher(stores, watcher::Config::default().any_semantic()).backoff(WatchBackoff::default()),
    )
    .applied_objects();
    let (cstore_reader, cstore_writer) = reflector::store::<ClusterSecretStore>();
    // Changes the ClusterSecretRef fan-out must see (SecretRefs and ClusterSecretStores).
    let fanout_changed = Arc::new(tokio::sync::Notify::new());
    let cstore_stream = {
        let changed = fanout_changed.clone();
        reflector::reflector(
            cstore_writer,
            watcher(cluster_stores, watcher::Config::default().any_semantic())
                .backoff(WatchBackoff::default()),
        )
        .inspect(move |_| changed.notify_one())
        .applied_objects()
    };

    let secret_cfg = watcher::Config::default()
        .labels(&format!(
            "{}={}",
            api::MANAGED_BY_LABEL,
            api::MANAGED_BY_VALUE
        ))
        .any_semantic()
        .page_size(500);
    let secret_stream = watcher(secrets, secret_cfg).backoff(WatchBackoff::default());

    let reporter = Reporter {
        controller: "secretsync".into(),
        instance: Some(settings.identity.clone()),
    };
    let mut resolver = resolver::StoreResolver::new(
        client.clone(),
        settings.controller_namespace.clone(),
        settings.allow_inline_secrets,
        store_reader.clone(),
        cstore_reader.clone(),
    );
    resolver.allow_insecure_endpoints = settings.allow_insecure_endpoints;
    let concurrency = settings.concurrency;
    let lease = settings.leader_election.clone();
    // Without leader election this replica always writes; with it, only while it holds the lease.
    let leader = Arc::new(AtomicBool::new(lease.is_none()));
    let lease_known = Arc::new(AtomicBool::new(lease.is_none()));
    let ctx = Arc::new(Context::new(
        client.clone(),
        reporter,
        settings,
        hmac,
        resolver,
        metrics,
        audit,
        leader.clone(),
    ));
    let (became_leader_tx, became_leader_rx) = futures::channel::mpsc::unbounded::<()>();
    let lease_task = lease.map(|l| {
        tokio::spawn(leader::run(
            client.clone(),
            ctx.settings.controller_namespace.clone(),
            ctx.settings.identity.clone(),
            l,
            leader.clone(),
            lease_known.clone(),
            became_leader_tx,
            stop(),
        ))
    });
    let restarter = tokio::spawn(ctx.restarter.clone().run(ctx.clone(), stop()));
    let store_checks = tokio::spawn(store_status::run(
        ctx.clone(),
        store_reader.clone(),
        cstore_reader.clone(),
        stop(),
    ));

    // The SecretRef cache holds every SecretRef for good, compact (see `cache`): without
    // managedFields (never read, and their FieldsV1 trees are most of an object's memory) and without
    // kubectl's last-applied-configuration annotation (a second copy of the whole object on
    // everything installed with `kubectl apply` or Argo CD's client-side apply; never read).
    let cache = Arc::new(cache::SecretRefCache::default());
    // New and changed SecretRefs also go to the fast lane (see `priority`): live watch events only,
    // not the initial list (or a relist), which the queue works through anyway.
    let (urgent_tx, urgent_rx) = futures::channel::mpsc::unbounded::<Arc<str>>();
    let sref_stream = watcher(srefs, {
        let cfg = watcher::Config::default().any_semantic().page_size(500);
        // A shard watches only its own SecretRefs (`--watch-label-selector`, `shard`).
        match &ctx.settings.watch_label_selector {
            Some(sel) => cfg.labels(sel.as_str()),
            None => cfg,
        }
    })
    .backoff(WatchBackoff::default())
    .modify(|s| {
        s.metadata.managed_fields = None;
        if let Some(a) = s.metadata.annotations.as_mut() {
            a.remove(LAST_APPLIED);
        }
    });
    // The ClusterSecretRef fan-out: cluster scope only (it writes SecretRefs in any namespace), and
    // in a shard only if that shard serves every SecretRef it generates (`shard::runs_fanout`).
    let fanout = (ctx.settings.cluster_secretrefs
        && ctx.settings.namespace.is_none()
        && shard::runs_fanout(ctx.settings.watch_label_selector.as_ref()))
    .then(|| {
        tokio::spawn(fanout::run(
            client.clone(),
            cache.clone(),
            cstore_reader.clone(),
            fanout_changed.clone(),
            leader.clone(),
            stop(),
        ))
    });
    let timers = tokio::spawn({
        let ctx = ctx.clone();
        let stop = stop();
        async move { ctx.work.run_timers(stop).await }
    });
    let fast_lane = {
        let (ctx, cache) = (ctx.clone(), cache.clone());
        let (sr, csr) = (store_reader.clone(), cstore_reader.clone());
        let limit = usize::from(concurrency / 4).max(2);
        tokio::spawn(
            urgent_rx
                .take_until(stop())
                .for_each_concurrent(limit, move |key| {
                    let (ctx, cache) = (ctx.clone(), cache.clone());
                    let (sr, csr) = (sr.clone(), csr.clone());
                    async move {
                        if !ctx.may_write() {
                            return;
                        }
                        futures::join!(synced(&sr), synced(&csr));
                        let _claim = ctx.claims.claim(&key).await;
                        // The latest version, if it still needs a sync.
                        let Some(sref) = cache.get(&key).filter(|s| priority::is_urgent(s)) else {
                            return;
                        };
                        // Errors and the next refresh are left to the queued reconcile of the
                        // same event.
                        let _ = reconcile::reconcile(sref, ctx.clone()).await;
                    }
                }),
        )
    };
    // The watches feed the work queue (and the SecretRef watch the cache).
    let feeds = {
        let (c1, c2, c3, c4, c5) = (
            ctx.clone(),
            ctx.clone(),
            ctx.clone(),
            ctx.clone(),
            ctx.clone(),
        );
        let (k1, k2, k3, k5) = (cache.clone(), cache.clone(), cache.clone(), cache.clone());
        let changed = fanout_changed.clone();
        vec![
            tokio::spawn(sref_stream.take_until(stop()).for_each(move |ev| {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        warn!(error = %e, "the SecretRef watch failed (retrying)");
                        return futures::future::ready(());
                    }
                };
                changed.notify_one();
                match ev {
                    watcher::Event::Init => k1.init_start(),
                    watcher::Event::InitApply(s) => {
                        let key = c1.work.intern(&c1.key_of(&s));
                        if let Err(e) = k1.init_apply(key, &s) {
                            warn!(error = %e, "a SecretRef could not be cached");
                        }
                    }
                    watcher::Event::InitDone => {
                        // Every SecretRef listed is reconciled; those gone meanwhile too (their
                        // reconcile finds nothing and forgets them).
                        let (listed, gone) = k1.init_done();
                        c1.work.enqueue_all(as_strs(&listed));
                        c1.work.enqueue_all(as_strs(&gone));
                    }
                    watcher::Event::Apply(s) => {
                        let key = c1.work.intern(&c1.key_of(&s));
                        if let Err(e) = k1.apply(key.clone(), &s) {
                            warn!(error = %e, "a SecretRef could not be cached");
                        }
                        if priority::is_urgent(&s) {
                            let _ = urgent_tx.unbounded_send(key.clone());
                        }
                        // Our own status write coming back needs no reconcile.
                        let rv = context::rv_number(s.metadata.resource_version.as_deref());
                        let own = rv.is_some()
                            && c1.work.with_existing(&key, |st| st.own_rv == rv) == Some(true);
                        if !own {
                            c1.work.enqueue(&key);
                        }
                    }
                    watcher::Event::Delete(s) => {
                        let key = c1.key_of(&s);
                        k1.delete(&key);
                        c1.work.enqueue(&key);
                    }
                }
                futures::future::ready(())
            })),
            tokio::spawn(store_stream.take_until(stop()).for_each(move |ev| {
                if let Ok(s) = ev {
                    let keys = k2.keys_for_store(
                        StoreKind::SecretStore,
                        &s.name_any(),
                        s.namespace().as_deref(),
                    );
                    c2.work.enqueue_all(as_strs(&keys));
                }
                futures::future::ready(())
            })),
            tokio::spawn(cstore_stream.take_until(stop()).for_each(move |ev| {
                if let Ok(s) = ev {
                    let keys =
                        k3.keys_for_store(StoreKind::ClusterSecretStore, &s.name_any(), None);
                    c3.work.enqueue_all(as_strs(&keys));
                }
                futures::future::ready(())
            })),
            tokio::spawn({
                // The first list of managed Secrets is skipped: every SecretRef is reconciled from
                // its own first list anyway, which checks its Secret. Later lists (after a watch
                // gap) are not.
                let mut first_list = true;
                secret_stream.take_until(stop()).for_each(move |ev| {
                    let (s, deleted) = match ev {
                        Ok(watcher::Event::Apply(s)) => (s, false),
                        Ok(watcher::Event::Delete(s)) => (s, true),
                        Ok(watcher::Event::InitApply(s)) if !first_list => (s, false),
                        Ok(watcher::Event::InitDone) => {
                            first_list = false;
                            return futures::future::ready(());
                        }
                        _ => return futures::future::ready(()),
                    };
                    if let Some(owner) = s.labels().get(api::SECRETREF_LABEL) {
                        let key = format!("{}/{owner}", s.namespace().unwrap_or_default());
                        // Our own write coming back needs no reconcile (a deletion always does).
                        let rv = context::rv_number(s.metadata.resource_version.as_deref());
                        let own = !deleted
                            && rv.is_some()
                            && c4.work.with_existing(&key, |st| st.secret_rv == rv) == Some(true);
                        // Only for SecretRefs that exist: a forged label names nothing.
                        if !own && c4.work.with_existing(&key, |_| ()).is_some() {
                            c4.work.enqueue(&key);
                        }
                    }
                    futures::future::ready(())
                })
            }),
            // Winning the lease reconciles everything.
            tokio::spawn(became_leader_rx.take_until(stop()).for_each(move |()| {
                c5.work.enqueue_all(as_strs(&k5.keys()));
                futures::future::ready(())
            })),
        ]
    };

    // The bookkeeping's sizes, for the metrics (every 15 s; summing the cache is about a
    // millisecond at 100,000 SecretRefs).
    let sizes = {
        let (ctx, cache) = (ctx.clone(), cache.clone());
        let stop = stop();
        tokio::spawn(async move {
            tokio::pin!(stop);
            loop {
                let w = ctx.work.sizes();
                let m = &ctx.metrics;
                m.set_bookkeeping("cache_secretrefs", cache.len());
                m.set_bookkeeping("cache_bytes", cache.blob_bytes());
                m.set_bookkeeping("queue_ready", w.ready);
                m.set_bookkeeping("timers", w.timers);
                m.set_bookkeeping("states", w.states);
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(Duration::from_secs(15)) => {}
                }
            }
        })
    };
    // Ready once the watches have listed everything.
    {
        let (r1, r2, cache, ready) = (
            store_reader.clone(),
            cstore_reader.clone(),
            cache.clone(),
            ready.clone(),
        );
        let known = lease_known.clone();
        tokio::spawn(async move {
            futures::join!(synced(&r1), synced(&r2), cache.wait_ready());
            while !known.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ready.store(true, Ordering::Relaxed);
            info!("watches synced; ready");
        });
    }
    // The runner: `concurrency` reconciles at a time, fed by the work queue; never two of one
    // SecretRef at once (the claim, shared with the fast lane).
    let (sr, csr) = (store_reader.clone(), cstore_reader.clone());
    let work_feed = futures::stream::unfold(ctx.clone(), |ctx| async move {
        let key = ctx.work.next().await;
        Some((key, ctx))
    });
    work_feed
        .take_until(stop())
        .for_each_concurrent(usize::from(concurrency), |key| {
            let (ctx, cache) = (ctx.clone(), cache.clone());
            let (sr, csr) = (sr.clone(), csr.clone());
            async move {
                ctx.work.started(&key);
                // Replicas without the lease keep their watches warm but neither read providers nor
                // write; winning the lease reconciles everything.
                if ctx.may_write() {
                    // Never judge a store missing before the store watches have listed.
                    futures::join!(synced(&sr), synced(&csr));
                    // Never at the same time as the fast lane.
                    let _claim = ctx.claims.claim(&key).await;
                    match cache.get(&key) {
                        // Deleted: forget it.
                        None => ctx.forget(&key),
                        Some(sref) => {
                            if let Err(e) = reconcile::reconcile(sref.clone(), ctx.clone()).await {
                                reconcile::error_policy(sref, &e, ctx.clone());
                            }
                        }
                    }
                }
                ctx.work.finished();
            }
        })
        .await;
    for f in feeds {
        let _ = f.await;
    }
    let _ = timers.await;
    let _ = sizes.await;
    let _ = fast_lane.await;
    let _ = restarter.await;
    let _ = store_checks.await;
    if let Some(t) = fanout {
        let _ = t.await;
    }
    if let Some(t) = lease_task {
        let _ = t.await;
    }
    info!("controller stopped");
    Ok(())
}

/// The keys as `&str`s.
fn as_strs(keys: &[Arc<str>]) -> impl Iterator<Item = &str> {
    keys.iter().map(|k| &**k)
}

/// kubectl's copy of the applied manifest (see the SecretRef cache).
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Backoff of the watches after errors: 250 ms doubling to at most 2 s, with jitter. kube-runtime's
/// default (client-go's, up to 30 s) would leave the controller blind for up to half a minute after
/// an API-server outage; DESIGN §6 G6 wants it back within seconds (`tests/soak.rs` checks 5 s after a
/// 60 s outage in `make soak`). A handful of watches retrying every 2 s is no load on an API server.
struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const MIN: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(2);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::MIN }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(d.mul_f64(rand::random_range(0.75..1.0)))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::MIN;
    }
}
