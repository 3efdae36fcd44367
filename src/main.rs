//! The `secretsync` binary: parse the command line (every flag also from the environment), dispatch.

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
    /// Manage the local encrypted file store.
    #[command(subcommand)]
    Store(secretsync::cli::store::StoreCommand),
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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Controller(args) => run_controller(args).await,
        Command::Crds { out } => secretsync::cli::crds::run(out.as_deref(), &mut std::io::stdout()),
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
    };
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::watch::channel(false);
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
    secretsync::controller::run(client, settings, metrics, ready, shutdown()).await?;
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
