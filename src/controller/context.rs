//! State shared by every reconcile.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};

use super::resolver::StoreResolver;
use crate::api::{SecretRef, SecretRefStatus};
use crate::audit::HmacKey;
use crate::audit::trail::AuditLog;
use crate::providers::fetch::Fetcher;
use crate::telemetry::Metrics;

/// Controller settings (from flags).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch only this namespace (default: all).
    pub namespace: Option<String>,
    /// Reconciles in parallel.
    pub concurrency: u16,
    /// Allow `fake` stores (inline values).
    pub allow_inline_secrets: bool,
    /// Refresh interval when neither SecretRef nor store sets one.
    pub default_refresh_interval: Duration,
    /// The controller's own namespace (cluster-store credentials, HMAC key, lease).
    pub controller_namespace: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// Name of the Secret (in the controller namespace) holding the HMAC key; created if missing.
    pub hmac_key_secret: String,
    /// Accept plain-HTTP provider endpoints that are not loopback addresses.
    pub allow_insecure_endpoints: bool,
    /// Quiet period after the last rotation before a workload is restarted.
    pub restart_debounce: Duration,
    /// Keep the SecretRefs of ClusterSecretRefs (`--cluster-secretrefs`; only without `namespace`).
    pub cluster_secretrefs: bool,
    /// Leader election (`--leader-elect`); `None`: this replica always writes.
    pub leader_election: Option<LeaseSettings>,
    /// Serve only the SecretRefs this selector matches (`--watch-label-selector`: one shard, see
    /// [`super::shard`]); `None`: every SecretRef.
    pub watch_label_selector: Option<super::shard::ShardSelector>,
}

/// Leader-election timings.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Name of the Lease in the controller's namespace.
    pub lease_name: String,
    /// How long a lease is valid after its last renewal (seconds).
    pub duration_secs: u64,
    /// How long before expiry the holder renews (seconds).
    pub grace_secs: u64,
}

/// What the controller remembers about one SecretRef between reconciles (in memory only).
#[derive(Default, Debug, Clone)]
pub struct RefState {
    /// Consecutive failures (backoff), lost write races not counted.
    pub failures: u16,
    /// Consecutive lost write races (409 Conflict): their own, short backoff, so that races do not
    /// lengthen the backoff of real failures.
    pub conflicts: u16,
    /// The rotation last announced (Rotated event, metric, restarts): a short hash of its data
    /// HMAC, 0 for none. A retry after a failed status write does not announce it again.
    pub announced: u32,
    /// When the next periodic refresh is due (unknown after a restart). Kept through failures.
    pub next_refresh: Option<tokio::time::Instant>,
    /// After a failure: the end of the current backoff step, before which the provider is not read
    /// again without a reason (see [`super::schedule::read_gate`]). `None` while not failing.
    pub next_retry: Option<tokio::time::Instant>,
    /// The generation the provider was last read for (a new one is a reason to read).
    pub read_generation: Option<i64>,
    /// The store answered again after failures this SecretRef waits out (a reason to read).
    pub woken: bool,
    /// This failure streak was already cut short once by a wake-up (see [`Context::wake_store`]).
    pub wake_spent: bool,
    /// The status we last wrote, and the resourceVersion the object had before that write: while
    /// the watch still shows that older version, our own write is the truth. Dropped once the watch
    /// shows a newer version (boxed: most SecretRefs have none, and this map holds one entry per
    /// SecretRef).
    pub written: Option<Box<(String, SecretRefStatus)>>,
    /// Identity of the store configuration the last fetch used (a changed store means a re-read).
    pub store_id: Option<std::sync::Arc<str>>,
    /// Waiting in the work queue (see [`super::queue::Work`]).
    pub queued: bool,
    /// When the SecretRef's timer (refresh slot or backoff step) queues it.
    pub timer_at: Option<tokio::time::Instant>,
    /// Its Ready state as last counted in the metrics (`None`: not yet known).
    pub ready: Option<bool>,
    /// The resourceVersion our last status write gave the SecretRef: the watch event of exactly that
    /// version is our own write coming back, and needs no reconcile.
    pub own_rv: Option<u64>,
    /// The resourceVersion our last write gave the target Secret (same, for the Secret watch).
    pub secret_rv: Option<u64>,
}

/// A resourceVersion as a number (what every etcd-backed API server hands out); `None` for anything
/// else, which then never matches (every event is reconciled).
pub fn rv_number(rv: Option<&str>) -> Option<u64> {
    rv.and_then(|v| v.parse().ok())
}

/// Shared state of the controller.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Who publishes events (see [`Context::recorder`]).
    reporter: Reporter,
    /// Settings.
    pub settings: Settings,
    /// The controller's HMAC key: the audit trail's, and the root of every namespace's key
    /// ([`Context::ns_hmac`]).
    pub hmac: HmacKey,
    /// Per-namespace HMAC keys derived from `hmac`, by namespace.
    ns_keys: Mutex<HashMap<String, HmacKey>>,
    /// Shared provider reads.
    pub fetcher: Fetcher,
    /// Stores and their providers.
    pub stores: StoreResolver,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The audit trail.
    pub audit: Arc<AuditLog>,
    /// Debounced workload restarts.
    pub restarter: Arc<super::restart::Restarter>,
    /// Whether this replica may write (always true without leader election).
    pub leader: Arc<AtomicBool>,
    /// SecretRefs being reconciled (by the queue or the fast lane).
    pub claims: super::priority::Claims,
    /// The work queue, the timers and every SecretRef's [`RefState`].
    pub work: super::queue::Work,
    /// SecretRefs in backoff after a transient provider failure, by store (`Kind/[ns/]name`): woken as
    /// soon as the store answers again, instead of waiting out their backoff.
    failing: Mutex<HashMap<String, HashSet<ObjectRef<SecretRef>>>>,
}

impl Context {
    /// A context.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        reporter: Reporter,
        settings: Settings,
        hmac: HmacKey,
        stores: StoreResolver,
        metrics: Arc<Metrics>,
        audit: Arc<AuditLog>,
        leader: Arc<AtomicBool>,
    ) -> Self {
        let restarter = Arc::new(super::restart::Restarter::new(
            client.clone(),
            settings.restart_debounce,
        ));
        let settings_concurrency = settings.concurrency;
        let fetcher = Fetcher::default();
        fetcher.set_observer(metrics.clone());
        Self {
            claims: super::priority::Claims::default(),
            client,
            reporter,
            settings,
            hmac,
            ns_keys: Mutex::new(HashMap::new()),
            fetcher,
            stores,
            metrics,
            audit,
            restarter,
            leader,
            work: super::queue::Work::new(usize::from(settings_concurrency).saturating_mul(2)),
            failing: Mutex::new(HashMap::new()),
        }
    }

    /// An event recorder. A fresh one each time: kube-runtime's recorder caches every event it
    /// published (for series aggregation) until its next publish, so a shared one would hold one
    /// event per SecretRef after a first sync of many, for good. We publish only on changes, so
    /// repeats within the aggregation window are rare anyway.
    pub fn recorder(&self) -> Recorder {
        Recorder::new(self.client.clone(), self.reporter.clone())
    }

    /// The key of every HMAC that leaves the controller for objects in `namespace` (status, the
    /// Secret's annotation, restart annotations): derived from the controller's key per namespace
    /// (DESIGN §2.10).
    pub fn ns_hmac(&self, namespace: &str) -> HmacKey {
        self.ns_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(namespace.to_string())
            .or_insert_with(|| self.hmac.for_namespace(namespace))
            .clone()
    }

    /// Whether this replica holds the lease (or runs without leader election).
    pub fn may_write(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// The audit actor of this controller.
    pub fn actor(&self) -> String {
        format!(
            "controller/{}/{}",
            self.settings.controller_namespace, self.settings.identity
        )
    }

    /// `namespace/name` of a SecretRef.
    pub fn key_of(&self, sref: &SecretRef) -> String {
        format!(
            "{}/{}",
            sref.namespace().unwrap_or_default(),
            sref.name_any()
        )
    }

    /// Runs `f` on the SecretRef's in-memory state.
    pub fn with_state<R>(&self, key: &str, f: impl FnOnce(&mut RefState) -> R) -> R {
        self.work.with_state(key, f)
    }

    /// Records the SecretRef's Ready state (`None`: deleted) and nearest expiry in the metrics.
    pub fn set_ready(&self, key: &str, ready: Option<bool>, expires_unix: Option<i64>) {
        let old = self.with_state(key, |s| std::mem::replace(&mut s.ready, ready));
        self.metrics
            .set_secretref_state(key, old, ready, expires_unix);
    }

    /// Reconciles the SecretRef `key` again after `after` (its refresh slot or backoff step; replaces
    /// the previous timer). The runner's own requeue is not used (see [`super::queue`]).
    pub fn requeue(&self, key: &str, after: Duration) -> kube::runtime::controller::Action {
        self.work.schedule(key, after);
        kube::runtime::controller::Action::await_change()
    }

    /// The store a SecretRef uses, as `Kind/[namespace/]name`.
    pub fn store_key(sref: &SecretRef) -> String {
        match sref.spec.store_ref.kind.unwrap_or_default() {
            crate::api::StoreKind::SecretStore => format!(
                "SecretStore/{}/{}",
                sref.namespace().unwrap_or_default(),
                sref.spec.store_ref.name
            ),
            crate::api::StoreKind::ClusterSecretStore => {
                format!("ClusterSecretStore/{}", sref.spec.store_ref.name)
            }
        }
    }

    /// Records a SecretRef waiting out a transient failure of its store.
    pub fn note_failing(&self, sref: &SecretRef) {
        let mut f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        f.entry(Self::store_key(sref))
            .or_default()
            .insert(ObjectRef::from_obj(sref));
    }

    /// The store answered again: reconcile now every SecretRef that was waiting on it with more
    /// than [`Context::WAKE_AFTER`] of its backoff step left (recovery within a minute of an outage,
    /// DESIGN §6 G6), once per failure streak. Shorter steps end soon anyway; and a key that keeps
    /// failing while its store serves other keys must not be read on every other key's success.
    pub fn wake_store(&self, store_key: &str) {
        let waiting = self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(store_key);
        let now = tokio::time::Instant::now();
        for r in waiting.into_iter().flatten() {
            let key = format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name);
            let wake = self.with_state(&key, |s| {
                let wake = !s.wake_spent
                    && s.next_retry
                        .is_some_and(|t| t.saturating_duration_since(now) > Self::WAKE_AFTER);
                if wake {
                    s.woken = true;
                    s.wake_spent = true;
                }
                wake
            });
            if wake {
                self.work.enqueue(&key);
            }
        }
    }

    /// See [`Context::wake_store`].
    pub const WAKE_AFTER: Duration = Duration::from_secs(30);

    /// Stores with SecretRefs waiting on them.
    pub fn failing_stores(&self) -> Vec<String> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Forgets a deleted SecretRef.
    pub fn forget(&self, key: &str) {
        self.work.forget(key);
    }
}
