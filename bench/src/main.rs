//! `secretsync-bench`: the benchmarks of DESIGN §6 (`make bench`, `make bench-quick`).
//!
//! Runs the release `secretsync` binary against the `kube-emulator` binary (each its own process),
//! with the `fake` store for the pure-controller figures and moto behind a counting proxy for the AWS
//! economy figure (`testkit::doubles::aws`, shared with the tests), and prints a Markdown table
//! (median and worst of N runs) plus a JSON file under `target/bench/`. Benchmarks print figures;
//! they assert nothing (they are not part of `make test`).

mod kapi;
mod objects;
mod operator;
mod report;
mod scenarios;
mod shards;
mod stats;
mod sys;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "secretsync-bench",
    about = "Benchmarks of secretsync (DESIGN §6)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the scenarios and print the table.
    Run(RunArgs),
    /// Start a seeded emulator (the `run` objects) for manual profiling; holds until stdin closes.
    Env {
        #[command(flatten)]
        run: RunArgs,
        /// Hold at most this long.
        #[arg(long, default_value_t = 3600)]
        hold_seconds: u64,
    },
    /// Static shards (docs/scaling.md): S shards × R replicas against one emulator; first sync,
    /// double writes, hand-over after kill -9, split brain after SIGSTOP/SIGCONT.
    Shards(ShardArgs),
    /// (internal) The separate watching process of G3.
    Watch {
        #[arg(long)]
        url: String,
        #[arg(long)]
        selector: String,
        #[arg(long)]
        keys: usize,
        #[arg(long, default_value_t = 1800)]
        max_seconds: u64,
    },
}

/// The binaries a benchmark runs, and where it writes (shared by `run` and `shards`).
#[derive(clap::Args, Debug)]
struct Binaries {
    /// The operator binary.
    #[arg(
        long,
        env = "BENCH_OPERATOR",
        default_value = "target/release/secretsync"
    )]
    operator: PathBuf,
    /// The emulator binary.
    #[arg(
        long,
        env = "BENCH_EMULATOR",
        default_value = "target/release/kube-emulator"
    )]
    emulator: PathBuf,
    /// Output directory (JSON and Markdown reports, work files).
    #[arg(long, env = "BENCH_OUT", default_value = "target/bench")]
    out: PathBuf,
    /// Extra operator flags (space-separated).
    #[arg(long, env = "BENCH_OPERATOR_ARGS", default_value = "")]
    operator_args: String,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// SecretRefs (and managed Secrets).
    #[arg(long, env = "BENCH_REFS", default_value_t = 10_000)]
    refs: usize,
    /// Unrelated 128 KiB Secrets present from the start (default: refs / 2, at most 10,000).
    #[arg(long, env = "BENCH_UNRELATED")]
    unrelated: Option<usize>,
    /// Unrelated Secrets added for the growth figure (default: same as --unrelated).
    #[arg(long, env = "BENCH_UNRELATED_MORE")]
    unrelated_more: Option<usize>,
    /// Size of an unrelated Secret, KiB.
    #[arg(long, env = "BENCH_UNRELATED_KIB", default_value_t = 128)]
    unrelated_kib: usize,
    /// SecretRefs created in each G3 phase (default: refs / 10, at most 3,000).
    #[arg(long, env = "BENCH_CREATES")]
    creates: Option<usize>,
    /// Creations per second in G3.
    #[arg(long, env = "BENCH_RATE", default_value_t = 50.0)]
    rate: f64,
    /// Remote keys per fake store.
    #[arg(long, env = "BENCH_KEYS", default_value_t = 100)]
    keys: usize,
    /// SecretRefs per namespace (one store per namespace).
    #[arg(long, env = "BENCH_PER_NAMESPACE", default_value_t = 1000)]
    per_namespace: usize,
    /// Runs (fresh emulator and operator each); the table shows median and worst.
    #[arg(long, env = "BENCH_RUNS", default_value_t = 3)]
    runs: usize,
    /// Seconds of the steady-state CPU window (1 h refresh).
    #[arg(long, env = "BENCH_IDLE_SECONDS", default_value_t = 30)]
    idle_seconds: u64,
    /// Refresh interval (s) of the periodic no-op window (G7, G8 per refresh); two cycles are measured.
    #[arg(long, env = "BENCH_FAST_INTERVAL", default_value_t = 30)]
    fast_interval: u64,
    /// Seconds to let the operator settle after each phase.
    #[arg(long, env = "BENCH_SETTLE_SECONDS", default_value_t = 5)]
    settle_seconds: u64,
    /// G4: SecretRefs on AWS.
    #[arg(long, env = "BENCH_AWS_REFS")]
    aws_refs: Option<usize>,
    /// G4: distinct AWS keys (default: aws-refs / 5).
    #[arg(long, env = "BENCH_AWS_KEYS")]
    aws_keys: Option<usize>,
    /// G4: refresh interval of the compressed cycles, seconds.
    #[arg(long, env = "BENCH_AWS_INTERVAL", default_value_t = 30)]
    aws_interval: u64,
    /// G4: measured cycles (default: runs).
    #[arg(long, env = "BENCH_AWS_CYCLES")]
    aws_cycles: Option<usize>,
    /// Only these groups (comma-separated: base, controller, g4).
    #[arg(long, env = "BENCH_ONLY", value_delimiter = ',')]
    only: Vec<String>,
    #[command(flatten)]
    bins: Binaries,
    /// A name for this run's JSON file (`target/bench/<label>.json`; latest.json too).
    #[arg(long, env = "BENCH_LABEL", default_value = "bench")]
    label: String,
}

#[derive(clap::Args, Debug)]
struct ShardArgs {
    /// SecretRefs (and managed Secrets), split over the shards by namespace.
    #[arg(long, env = "BENCH_REFS", default_value_t = 200_000)]
    refs: usize,
    /// Shards (each its own Lease and label selector `secretsync.io/shard=<a|b|…>`).
    #[arg(long, env = "BENCH_SHARDS", default_value_t = 2)]
    shards: usize,
    /// Controller processes per shard (one leader, the rest standbys).
    #[arg(long, env = "BENCH_REPLICAS", default_value_t = 2)]
    replicas: usize,
    /// Remote keys per fake store.
    #[arg(long, env = "BENCH_KEYS", default_value_t = 100)]
    keys: usize,
    /// SecretRefs per namespace (one store per namespace).
    #[arg(long, env = "BENCH_PER_NAMESPACE", default_value_t = 1000)]
    per_namespace: usize,
    /// Unrelated Secrets present from the start.
    #[arg(long, env = "BENCH_UNRELATED", default_value_t = 0)]
    unrelated: usize,
    /// Size of an unrelated Secret, KiB.
    #[arg(long, env = "BENCH_UNRELATED_KIB", default_value_t = 128)]
    unrelated_kib: usize,
    /// `--leader-elect-lease-duration` of every process, seconds.
    #[arg(long, env = "BENCH_LEASE_DURATION", default_value_t = 8)]
    lease_duration: u64,
    /// `--leader-elect-renew-grace` of every process, seconds.
    #[arg(long, env = "BENCH_RENEW_GRACE", default_value_t = 3)]
    renew_grace: u64,
    /// Namespaces of the second shard whose store data changes in the split-brain phase.
    #[arg(long, env = "BENCH_SPLIT_NAMESPACES", default_value_t = 10)]
    split_namespaces: usize,
    /// Rounds of the split-brain phase (the resumed old leader is the next round's standby).
    #[arg(long, env = "BENCH_SPLIT_ROUNDS", default_value_t = 3)]
    split_rounds: usize,
    /// Keep the old leader stopped at least this long in the split-brain phase (default: twice the
    /// lease duration).
    #[arg(long, env = "BENCH_PAUSE_SECONDS")]
    pause_seconds: Option<u64>,
    /// Seconds to let the processes settle after each phase.
    #[arg(long, env = "BENCH_SETTLE_SECONDS", default_value_t = 5)]
    settle_seconds: u64,
    /// Longest wait for the first sync, seconds.
    #[arg(long, env = "BENCH_TIMEOUT_SECONDS", default_value_t = 3600)]
    timeout_seconds: u64,
    #[command(flatten)]
    bins: Binaries,
    /// A name for this run's files (`<out>/<label>.json`, `.md`).
    #[arg(long, env = "BENCH_LABEL", default_value = "shards")]
    label: String,
}

async fn shards(a: ShardArgs) -> anyhow::Result<()> {
    let repo = std::env::current_dir()?;
    let abs = |p: PathBuf| if p.is_absolute() { p } else { repo.join(p) };
    let cfg = shards::Config {
        refs: a.refs.max(1),
        shards: a.shards,
        replicas: a.replicas,
        keys: a.keys.max(1),
        per_ns: a.per_namespace.max(1),
        unrelated: a.unrelated,
        unrelated_kib: a.unrelated_kib,
        lease_duration: a.lease_duration.max(2),
        renew_grace: a.renew_grace.clamp(1, a.lease_duration.max(2) - 1),
        split_namespaces: a.split_namespaces.max(1),
        split_rounds: a.split_rounds,
        pause: Duration::from_secs(a.pause_seconds.unwrap_or(a.lease_duration.max(2) * 2)),
        settle: Duration::from_secs(a.settle_seconds),
        timeout: Duration::from_secs(a.timeout_seconds.max(1)),
        operator: abs(a.bins.operator.clone()),
        emulator: abs(a.bins.emulator.clone()),
        work: abs(a.bins.out.join("work")),
        repo: repo.clone(),
        operator_args: a
            .bins
            .operator_args
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    };
    let machine = sys::machine_facts(&repo, &cfg.operator);
    eprintln!("secretsync-bench: {}", serde_json::to_string(&machine)?);
    let started = std::time::Instant::now();
    let report = shards::run(&cfg).await?;
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "?".into());
    let facts = format!(
        "Machine: {} cores ({}), {} GiB, {os}, Linux {}, {} build, {}, commit {}. {} SecretRefs, {} shard(s) × {} \
         replica(s), lease {} s, renew grace {} s (renew every {} s), {:.0} s in all.",
        machine["cores"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["memory_gib"],
        machine["kernel"].as_str().unwrap_or("?"),
        machine["build_profile"].as_str().unwrap_or("?"),
        machine["rustc"].as_str().unwrap_or("?"),
        machine["commit"].as_str().unwrap_or("?"),
        cfg.refs,
        cfg.shards,
        cfg.replicas,
        cfg.lease_duration,
        cfg.renew_grace,
        cfg.lease_duration - cfg.renew_grace,
        started.elapsed().as_secs_f64(),
    );
    println!("{}\n{facts}", report.markdown);
    let mut doc = report.json;
    doc["machine"] = machine;
    doc["config"] = cfg.to_json();
    doc["elapsed_s"] = serde_json::json!(started.elapsed().as_secs_f64());
    let out = abs(a.bins.out.clone());
    std::fs::create_dir_all(&out)?;
    let file = out.join(format!("{}.json", a.label));
    std::fs::write(&file, serde_json::to_string_pretty(&doc)?)?;
    std::fs::write(
        out.join(format!("{}.md", a.label)),
        format!("{}\n{facts}\n", report.markdown),
    )?;
    eprintln!("secretsync-bench: wrote {}", file.display());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Watch {
            url,
            selector,
            keys,
            max_seconds,
        } => watch::run_child(&url, &selector, keys, Duration::from_secs(max_seconds)).await,
        Cmd::Run(a) => run(a).await,
        Cmd::Shards(a) => shards(a).await,
        Cmd::Env { run, hold_seconds } => {
            let cfg = config(&run)?;
            scenarios::hold_env(&cfg, Duration::from_secs(hold_seconds)).await
        }
    }
}

fn config(a: &RunArgs) -> anyhow::Result<scenarios::Config> {
    let repo = std::env::current_dir()?;
    let abs = |p: PathBuf| if p.is_absolute() { p } else { repo.join(p) };
    let unrelated = a.unrelated.unwrap_or((a.refs / 2).min(10_000));
    let aws_refs = a.aws_refs.unwrap_or(a.refs);
    Ok(scenarios::Config {
        refs: a.refs,
        unrelated,
        unrelated_more: a.unrelated_more.unwrap_or(unrelated),
        unrelated_kib: a.unrelated_kib,
        creates: a.creates.unwrap_or((a.refs / 10).clamp(10, 3_000)),
        rate: a.rate.max(0.1),
        keys: a.keys.max(1),
        per_ns: a.per_namespace.max(1),
        runs: a.runs.max(1),
        idle_window: Duration::from_secs(a.idle_seconds.max(1)),
        fast_interval: Duration::from_secs(a.fast_interval.max(1)),
        settle: Duration::from_secs(a.settle_seconds),
        aws_refs,
        aws_keys: a.aws_keys.unwrap_or((aws_refs / 5).max(1)),
        aws_interval: Duration::from_secs(a.aws_interval.max(1)),
        aws_cycles: a.aws_cycles.unwrap_or(a.runs.max(1)),
        only: a.only.clone(),
        operator: abs(a.bins.operator.clone()),
        emulator: abs(a.bins.emulator.clone()),
        work: abs(a.bins.out.join("work")),
        repo: repo.clone(),
        operator_args: a
            .bins
            .operator_args
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    })
}

async fn run(a: RunArgs) -> anyhow::Result<()> {
    let cfg = config(&a)?;
    let repo = cfg.repo.clone();
    let abs = |p: PathBuf| if p.is_absolute() { p } else { repo.join(p) };
    let machine = sys::machine_facts(&repo, &cfg.operator);
    eprintln!("secretsync-bench: {}", serde_json::to_string(&machine)?);
    let started = std::time::Instant::now();
    let runs = scenarios::run_all(&cfg).await?;
    let scale = report::Scale {
        vars: vec![
            ("refs", cfg.refs.to_string()),
            ("unrelated", cfg.unrelated.to_string()),
            ("more", cfg.unrelated_more.to_string()),
            ("creates", cfg.creates.to_string()),
            ("rate", format!("{}", cfg.rate)),
            ("aws_refs", cfg.aws_refs.to_string()),
            ("aws_keys", cfg.aws_keys.to_string()),
        ],
    };
    let rows = report::rows(&runs, cfg.refs);
    let table = report::markdown(&rows, &scale);
    let facts = format!(
        "Machine: {} cores ({}), {} GiB, Linux {}, {} build, {}, commit {}. {} run(s), {:.0} s in all. \
         G4 measured over compressed cycles (refresh {} s), scaled to a 1 h refresh: calls/day = calls per cycle × 24.",
        machine["cores"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["memory_gib"],
        machine["kernel"].as_str().unwrap_or("?"),
        machine["build_profile"].as_str().unwrap_or("?"),
        machine["rustc"].as_str().unwrap_or("?"),
        machine["commit"].as_str().unwrap_or("?"),
        cfg.runs,
        started.elapsed().as_secs_f64(),
        cfg.aws_interval.as_secs(),
    );
    println!("{table}\n{facts}");
    let mut config = cfg.to_json();
    config["elapsed_s"] = serde_json::json!(started.elapsed().as_secs_f64());
    let doc = report::json_report(&rows, &runs, &scale, machine, config);
    let out = abs(a.bins.out.clone());
    std::fs::create_dir_all(&out)?;
    let body = serde_json::to_string_pretty(&doc)?;
    let file = out.join(format!("{}.json", a.label));
    std::fs::write(&file, &body)?;
    std::fs::write(out.join("latest.json"), &body)?;
    std::fs::write(
        out.join(format!("{}.md", a.label)),
        format!("{table}\n{facts}\n"),
    )?;
    eprintln!("secretsync-bench: wrote {}", file.display());
    Ok(())
}
