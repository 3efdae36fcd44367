//! Logging setup and Prometheus metrics. Metric labels are low-cardinality only: results, reasons
//! and provider kinds — never object names or error text.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Installs the global tracing subscriber (to stderr).
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabel {
    provider: String,
    operation: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderOnly {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartLabel {
    part: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabel {
    ready: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: String,
    result: String,
}

/// The controller's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    reconcile_duration: Histogram,
    provider_reads: Family<ProviderLabel, Counter>,
    secret_writes: Counter,
    status_writes: Counter,
    rotations: Counter,
    restarts: Family<KindLabel, Counter>,
    provider_calls: Family<CallLabel, Counter>,
    provider_latency: Family<ProviderOnly, Histogram, fn() -> Histogram>,
    secretrefs: Family<ReadyLabel, Gauge>,
    nearest_expiry: Gauge<f64, std::sync::atomic::AtomicU64>,
    audit_errors: Gauge,
    throttles: Counter,
    event_write_failures: Family<EventReasonLabel, Counter>,
    /// Sizes of the controller's own bookkeeping, by part (`cache_secretrefs`, `cache_bytes`,
    /// `queue_ready`, `timers`).
    bookkeeping: Family<PartLabel, Gauge>,
    /// Nearest expiry per SecretRef, only for those with one (certificates); the Ready state itself
    /// lives in the controller's per-SecretRef state.
    expiries: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("secretsync");
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by result (success or an error reason)",
            reconciles.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        let provider_reads = Family::<ProviderLabel, Counter>::default();
        registry.register(
            "provider_reads",
            "Values read from providers by provider and result",
            provider_reads.clone(),
        );
        let secret_writes = Counter::default();
        registry.register(
            "secret_writes",
            "Writes of target Secrets",
            secret_writes.clone(),
        );
        let status_writes = Counter::default();
        registry.register(
            "status_writes",
            "Writes of SecretRef status",
            status_writes.clone(),
        );
        let rotations = Counter::default();
        registry.register(
            "rotations",
            "Synced data that really changed after the first sync",
            rotations.clone(),
        );
        let provider_calls = Family::<CallLabel, Counter>::default();
        registry.register("provider_calls", "Provider API calls (batches, single reads, searches, retries) by provider, operation and result", provider_calls.clone());
        let provider_latency =
            Family::<ProviderOnly, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 12))
            });
        registry.register(
            "provider_call_duration_seconds",
            "Latency of provider API calls",
            provider_latency.clone(),
        );
        let restarts = Family::<KindLabel, Counter>::default();
        registry.register(
            "restarts",
            "Workload restarts triggered by rotations, by workload kind",
            restarts.clone(),
        );
        let secretrefs = Family::<ReadyLabel, Gauge>::default();
        registry.register(
            "secretrefs",
            "SecretRefs by Ready state",
            secretrefs.clone(),
        );
        let nearest_expiry = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "nearest_expiry_seconds",
            "Seconds until the nearest provider-reported expiry of any synced value (negative: expired; none: +Inf)",
            nearest_expiry.clone(),
        );
        nearest_expiry.set(f64::INFINITY);
        let audit_errors = Gauge::default();
        registry.register(
            "audit_errors",
            "Audit records that could not be written",
            audit_errors.clone(),
        );
        let throttles = Counter::default();
        registry.register(
            "provider_throttles",
            "Provider answers that asked us to slow down",
            throttles.clone(),
        );
        let bookkeeping = Family::<PartLabel, Gauge>::default();
        registry.register(
            "bookkeeping",
            "Sizes of the controller's in-memory bookkeeping by part: cached SecretRefs, their compressed bytes, keys waiting in the work queue, refresh timers",
            bookkeeping.clone(),
        );
        let event_write_failures = Family::<EventReasonLabel, Counter>::default();
        registry.register(
            "event_write_failures",
            "Kubernetes Events the API server refused or that could not be sent, by event reason",
            event_write_failures.clone(),
        );
        Self {
            registry,
            event_write_failures,
            reconciles,
            reconcile_duration,
            provider_reads,
            secret_writes,
            status_writes,
            rotations,
            restarts,
            provider_calls,
            provider_latency,
            secretrefs,
            nearest_expiry,
            audit_errors,
            throttles,
            expiries: Default::default(),
            bookkeeping,
        }
    }
}

/// Observes a reconcile's duration when dropped.
pub struct ReconcileTimer {
    start: Instant,
    hist: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.hist.observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    /// New metrics in a fresh registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Starts timing a reconcile.
    pub fn reconcile_timer(&self) -> ReconcileTimer {
        ReconcileTimer {
            start: Instant::now(),
            hist: self.reconcile_duration.clone(),
        }
    }

    /// Counts a finished reconcile.
    pub fn reconciled(&self, result: &str) {
        self.reconciles
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts a value read.
    pub fn provider_read(&self, provider: &str, result: &str) {
        self.provider_reads
            .get_or_create(&ProviderLabel {
                provider: provider.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts a Secret write.
    pub fn secret_written(&self) {
        self.secret_writes.inc();
    }

    /// Counts a status write.
    pub fn status_written(&self) {
        self.status_writes.inc();
    }

    /// Counts a rotation.
    pub fn rotated(&self) {
        self.rotations.inc();
    }

    /// Counts a workload restart.
    pub fn restarted(&self, kind: &str) {
        self.restarts
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Counts an event write that failed (`reason`: the event's own reason, a fixed set).
    pub fn event_write_failed(&self, reason: &str) {
        self.event_write_failures
            .get_or_create(&EventReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a throttled provider answer.
    pub fn throttled(&self) {
        self.throttles.inc();
    }

    /// Records the size of one part of the controller's bookkeeping.
    pub fn set_bookkeeping(&self, part: &'static str, n: usize) {
        self.bookkeeping
            .get_or_create(&PartLabel { part })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Records the audit sink's error count.
    pub fn set_audit_errors(&self, n: u64) {
        self.audit_errors.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Records a change of a SecretRef's Ready state from `old` to `ready` (`None`: unknown or
    /// deleted) and its nearest expiry (Unix seconds).
    pub fn set_secretref_state(
        &self,
        key: &str,
        old: Option<bool>,
        ready: Option<bool>,
        expires_unix: Option<i64>,
    ) {
        let label = |b: bool| ReadyLabel {
            ready: b.to_string(),
        };
        if old != ready {
            if let Some(o) = old {
                self.secretrefs.get_or_create(&label(o)).dec();
            }
            if let Some(r) = ready {
                self.secretrefs.get_or_create(&label(r)).inc();
            }
        }
        let mut ex = self.expiries.lock().unwrap_or_else(|p| p.into_inner());
        match expires_unix {
            Some(e) => {
                ex.insert(key.to_string(), e);
            }
            None => {
                ex.remove(key);
            }
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        {
            let ex = self.expiries.lock().unwrap_or_else(|p| p.into_inner());
            let now = chrono::Utc::now().timestamp();
            self.nearest_expiry.set(
                ex.values()
                    .min()
                    .map_or(f64::INFINITY, |e| (e - now) as f64),
            );
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl crate::providers::fetch::CallObserver for Metrics {
    fn on_call(&self, o: &crate::providers::fetch::CallOutcome) {
        let provider = o.provider.as_str().to_string();
        let result = o.error.map_or("success", |r| r.as_str()).to_string();
        self.provider_calls
            .get_or_create(&CallLabel {
                provider: provider.clone(),
                operation: o.operation.to_string(),
                result,
            })
            .inc();
        self.provider_latency
            .get_or_create(&ProviderOnly { provider })
            .observe(o.elapsed.as_secs_f64());
    }
}
