//! Logging setup and Prometheus metrics. Metric labels are low-cardinality only: results, reasons
//! and provider kinds — never object names or error text.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
        Self {
            registry,
            reconciles,
            reconcile_duration,
            provider_reads,
            secret_writes,
            status_writes,
            rotations,
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

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
