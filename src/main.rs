//! The `secretsync` binary: parse the command line (every flag also from the environment), dispatch.

#![warn(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};
use secretsync::telemetry::{self, LogFormat, Metrics};

#[derive(Parser)]
#[command(
    name = "secretsync",
    version,
    about = "Keeps Kubernetes Secrets in sync with external secret stores"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (in a cluster, or against the current kubeconfig).
    Controller(ControllerArgs),
    /// Print the CRDs generated from the API types, or write them to a directory.
    Crds {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Refresh SecretRefs now (sets the secretsync.io/force-sync annotation through the kubeconfig).
    Refresh(secretsync::cli::refresh::RefreshArgs),
    /// Work with audit trails.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage the local encrypted file store.
    #[command(subcommand)]
    Store(secretsync::cli::store::StoreCommand),
    /// Validate manifests and confirm every referenced remote key resolves (no values printed).
    /// Exit 0: all resolve; 1: problems; 2: usage or input error.
    Check(secretsync::cli::check::CheckArgs),
    /// Print the Secrets the controller would write (all or nothing; values base64 in `data`).
    Render(secretsync::cli::render::RenderArgs),
    /// Convert External Secrets Operator manifests (ExternalSecret, ClusterExternalSecret,
    /// SecretStore, ClusterSecretStore) to secretsync's. Exit 0: all converted (or --allow-partial);
    /// 1: some cannot be converted, or --check found problems; 2: usage or input error.
    Convert(secretsync::cli::convert::ConvertArgs),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of an audit file; exit 1 at the first broken or missing link.
    Verify {
        /// The audit file (JSON lines).
        file: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct ControllerArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "SECRETSYNC_NAMESPACE")]
    namespace: Option<String>,
    /// SecretRefs reconciled in parallel.
    #[arg(long, env = "SECRETSYNC_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Allow `fake` stores with inline values (demos and tests only).
    #[arg(long, env = "SECRETSYNC_ALLOW_INLINE_SECRETS")]
    allow_inline_secrets: bool,
    /// Accept plain-HTTP provider endpoints that are not loopback addresses (not recommended).
    #[arg(long, env = "SECRETSYNC_ALLOW_INSECURE_ENDPOINTS")]
    allow_insecure_endpoints: bool,
    /// Refresh interval when neither the SecretRef nor its store sets one.
    #[arg(long, env = "SECRETSYNC_DEFAULT_REFRESH_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    default_refresh_interval: std::time::Duration,
    /// Log format.
    #[arg(
        long,
        env = "SECRETSYNC_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `secretsync=debug`).
    #[arg(long, env = "SECRETSYNC_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Address of /metrics.
    #[arg(long, env = "SECRETSYNC_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Address of /livez and /readyz (may equal the metrics address).
    #[arg(long, env = "SECRETSYNC_HEALTH_ADDR", default_value = "0.0.0.0:8081")]
    health_addr: SocketAddr,
    /// The controller's own namespace (downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "secretsync-system")]
    pod_namespace: String,
    /// This replica's name (downward API): event reporter and lease identity.
    #[arg(long, env = "POD_NAME", default_value = "secretsync")]
    pod_name: String,
    /// Append the hash-chained audit trail to this file instead of stdout.
    #[arg(long, env = "SECRETSYNC_AUDIT_FILE")]
    audit_file: Option<std::path::PathBuf>,
    /// Quiet period after the last rotation before workloads are restarted (a burst restarts once).
    #[arg(long, env = "SECRETSYNC_RESTART_DEBOUNCE", default_value = "10s", value_parser = parse_duration)]
    restart_debounce: std::time::Duration,
    /// Run the ClusterSecretRef fan-out (cluster scope only: ignored with `--namespace`).
    #[arg(long, env = "SECRETSYNC_CLUSTER_SECRETREFS", default_value_t = true, action = clap::ArgAction::Set)]
    cluster_secretrefs: bool,
    /// Elect a leader through a Lease in the controller's namespace; only the holder writes.
    #[arg(long, env = "SECRETSYNC_LEADER_ELECT")]
    leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "SECRETSYNC_LEADER_ELECT_LEASE_NAME",
        default_value = "secretsync-leader"
    )]
    leader_elect_lease_name: String,
    /// How long a lease is valid after its last renewal.
    #[arg(long, env = "SECRETSYNC_LEADER_ELECT_LEASE_DURATION", default_value = "8s", value_parser = parse_duration)]
    leader_elect_lease_duration: std::time::Duration,
    /// How long before expiry the holder renews its lease.
    #[arg(long, env = "SECRETSYNC_LEADER_ELECT_RENEW_GRACE", default_value = "3s", value_parser = parse_duration)]
    leader_elect_renew_grace: std::time::Duration,
    /// Serve only the SecretRefs whose labels match this selector, e.g. `secretsync.io/shard=a`: one
    /// shard of a sharded install (docs/scaling.md). Each shard runs with its own
    /// `--leader-elect-lease-name`, and the selectors of the shards must not overlap. The
    /// ClusterSecretRef fan-out runs only in a shard that serves every SecretRef it generates (e.g.
    /// `!secretsync.io/shard`). Default: every SecretRef.
    #[arg(long, env = "SECRETSYNC_WATCH_LABEL_SELECTOR")]
    watch_label_selector: Option<String>,
    /// Secret in the controller namespace holding the HMAC key (created if missing).
    #[arg(
        long,
        env = "SECRETSYNC_HMAC_KEY_SECRET",
        default_value = "secretsync-hmac-key"
    )]
    hmac_key_secret: String,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    secretsync::api::duration::parse(s).map_err(|e| e.to_string())
}

/// jemalloc: less memory than glibc's malloc at 10k SecretRefs, and the same allocator in the musl
/// image (see Cargo.toml). The `system-alloc` feature (profiling with heaptrack) leaves it out.
#[cfg(all(not(target_env = "msvc"), not(feature = "system-alloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Controller(args) => run_controller(args).await,
        Command::Refresh(args) => secretsync::cli::refresh::run(args, &mut std::io::stdout())
            .await
            .map(|_| ()),
        Command::Audit(AuditCommand::Verify { file }) => {
            match secretsync::cli::audit::run_verify(&file, &mut std::io::stdout()) {
                Ok(true) => Ok(()),
                Ok(false) => return std::process::ExitCode::from(1),
                Err(e) => Err(e),
            }
        }
        Command::Crds { out } => secretsync::cli::crds::run(out.as_deref(), &mut std::io::stdout()),
        Command::Check(args) => {
            let res = secretsync::cli::check::run(&args, &mut std::io::stdout()).await;
            return secretsync::cli::manifests::exit_code(res);
        }
        Command::Render(args) => {
            let res =
                secretsync::cli::render::run(&args, &mut std::io::stdout(), &mut std::io::stderr())
                    .await;
            return secretsync::cli::manifests::exit_code(res);
        }
        Command::Convert(args) => {
            let res = secretsync::cli::convert::run(
                &args,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
            .await;
            return secretsync::cli::manifests::exit_code(res);
        }
        Command::Store(cmd) => {
            secretsync::cli::store::run(cmd, &mut std::io::stdout(), &mut std::io::stdin())
        }
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_controller(args: ControllerArgs) -> anyhow::Result<()> {
    telemetry::init_logging(args.log_format, &args.log_level);
    // Checked before anything else: a wrong selector would otherwise be a watch the API server
    // refuses over and over, or one that quietly selects nothing.
    let shard = match args.watch_label_selector.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(
            secretsync::controller::shard::ShardSelector::parse(s)
                .map_err(|e| anyhow::anyhow!("--watch-label-selector {s:?}: {e}"))?,
        ),
    };
    if let Some(sel) = &shard {
        tracing::info!(
            selector = %sel,
            fanout = args.cluster_secretrefs
                && args.namespace.is_none()
                && sel.admits_generated(),
            "serving one shard: only the SecretRefs this label selector matches"
        );
    }
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("connecting to Kubernetes: {e}"))?;
    let settings = secretsync::controller::Settings {
        namespace: args.namespace,
        concurrency: args.concurrency.max(1),
        allow_inline_secrets: args.allow_inline_secrets,
        default_refresh_interval: args.default_refresh_interval,
        controller_namespace: args.pod_namespace,
        identity: args.pod_name,
        hmac_key_secret: args.hmac_key_secret,
        allow_insecure_endpoints: args.allow_insecure_endpoints,
        restart_debounce: args.restart_debounce,
        cluster_secretrefs: args.cluster_secretrefs,
        leader_election: args.leader_elect.then(|| {
            secretsync::controller::context::LeaseSettings {
                lease_name: args.leader_elect_lease_name.clone(),
                duration_secs: args.leader_elect_lease_duration.as_secs().max(2),
                grace_secs: args
                    .leader_elect_renew_grace
                    .as_secs()
                    .clamp(1, args.leader_elect_lease_duration.as_secs().max(2) - 1),
            }
        }),
        watch_label_selector: shard,
    };
    let audit = std::sync::Arc::new(match &args.audit_file {
        Some(p) => secretsync::audit::trail::AuditLog::file(p)
            .map_err(|e| anyhow::anyhow!("opening audit file {}: {e}", p.display()))?,
        None => secretsync::audit::trail::AuditLog::stdout(),
    });
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let rx_run = rx.clone();
    let shutdown = move || {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(true);
    });
    let mut servers = Vec::new();
    servers.push(tokio::spawn(secretsync::server::serve(
        args.metrics_addr,
        metrics.clone(),
        ready.clone(),
        shutdown(),
    )));
    if args.health_addr != args.metrics_addr {
        servers.push(tokio::spawn(secretsync::server::serve(
            args.health_addr,
            metrics.clone(),
            ready.clone(),
            shutdown(),
        )));
    }
    secretsync::controller::run(client, settings, metrics, ready, audit, rx_run).await?;
    for s in servers {
        s.await??;
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
