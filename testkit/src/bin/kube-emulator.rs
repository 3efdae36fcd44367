//! Standalone Kubernetes API-server emulator.
//!
//! Prints its URL on stdout once listening and serves until SIGTERM/SIGINT.
//! Admin endpoints (fault injection, counters) live under `/_emulator/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use testkit::{Emulator, EmulatorOptions};

#[derive(Parser)]
#[command(
    name = "kube-emulator",
    about = "Emulated Kubernetes API server for tests and benchmarks"
)]
struct Args {
    /// Port on 127.0.0.1 (0 = random).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write a kubeconfig pointing at the emulator to this path.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Namespace for the kubeconfig context.
    #[arg(long)]
    namespace: Option<String>,
    /// Load every CustomResourceDefinition in this directory's YAML files.
    #[arg(long)]
    crds: Option<PathBuf>,
    /// Watch events kept per resource type.
    #[arg(long, default_value_t = 10_000)]
    watch_history: usize,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value_t = 3.0)]
    bookmark_interval: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let emu = Emulator::start(EmulatorOptions {
        port: args.port,
        watch_history: args.watch_history,
        bookmark_interval: Duration::from_secs_f64(args.bookmark_interval.max(0.01)),
    })
    .await?;
    if let Some(dir) = &args.crds {
        let n = emu.load_crds_from_dir(dir)?;
        eprintln!("kube-emulator: loaded {n} CRDs from {}", dir.display());
    }
    if let Some(p) = &args.kubeconfig {
        emu.write_kubeconfig(p, args.namespace.as_deref())?;
    }
    println!("{}", emu.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    emu.shutdown().await;
    Ok(())
}
