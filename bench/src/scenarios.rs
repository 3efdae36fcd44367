//! The scenarios. Each run starts fresh processes: a `kube-emulator`, the release `secretsync`
//! binary, a watcher process for G3, and `moto_server` for G4.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use testkit::doubles::aws::{Moto, MotoOptions, Proxy};
use testkit::http;

use crate::kapi::{EmulatorProc, Kapi};
use crate::objects::{self, ns_name};
use crate::operator::Operator;
use crate::report::RunFigures;
use crate::stats;
use crate::sys;
use crate::watch::{Watcher, unix_ns};

/// Everything a run needs to know.
#[derive(Clone, Debug)]
pub struct Config {
    /// SecretRefs (and managed Secrets).
    pub refs: usize,
    /// Unrelated Secrets present before the operator starts.
    pub unrelated: usize,
    /// Unrelated Secrets added for the growth figure.
    pub unrelated_more: usize,
    /// Size of each unrelated Secret, KiB.
    pub unrelated_kib: usize,
    /// SecretRefs created in each G3 phase.
    pub creates: usize,
    /// Creations per second in G3.
    pub rate: f64,
    /// Remote keys per fake store.
    pub keys: usize,
    /// SecretRefs per namespace.
    pub per_ns: usize,
    /// Runs of the pure-controller scenarios.
    pub runs: usize,
    /// Steady-state CPU window at the 1 h refresh.
    pub idle_window: Duration,
    /// Refresh interval of the periodic no-op window (G7, G8 per refresh).
    pub fast_interval: Duration,
    /// Pause after each phase.
    pub settle: Duration,
    /// G4: SecretRefs, distinct AWS keys, refresh interval, measured cycles.
    pub aws_refs: usize,
    /// Distinct AWS keys.
    pub aws_keys: usize,
    /// Refresh interval of the G4 run.
    pub aws_interval: Duration,
    /// Measured cycles of the G4 run.
    pub aws_cycles: usize,
    /// Which scenario groups to run.
    pub only: Vec<String>,
    /// Repository root.
    pub repo: PathBuf,
    /// `secretsync` binary.
    pub operator: PathBuf,
    /// `kube-emulator` binary.
    pub emulator: PathBuf,
    /// Work directory (logs, kubeconfigs).
    pub work: PathBuf,
    /// Extra operator flags.
    pub operator_args: Vec<String>,
}

impl Config {
    fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g.eq_ignore_ascii_case(group))
    }
    fn namespaces(&self, refs: usize) -> usize {
        refs.div_ceil(self.per_ns.max(1)).max(1)
    }
    /// Shown in the report.
    pub fn to_json(&self) -> Value {
        json!({
            "refs": self.refs, "unrelated": self.unrelated, "unrelated_more": self.unrelated_more,
            "unrelated_kib": self.unrelated_kib, "creates": self.creates, "rate_per_s": self.rate,
            "keys_per_store": self.keys, "refs_per_namespace": self.per_ns, "runs": self.runs,
            "idle_window_s": self.idle_window.as_secs_f64(), "fast_interval_s": self.fast_interval.as_secs_f64(),
            "aws_refs": self.aws_refs, "aws_keys": self.aws_keys,
            "aws_interval_s": self.aws_interval.as_secs_f64(), "aws_cycles": self.aws_cycles,
            "operator_args": self.operator_args,
        })
    }
}

fn log(msg: &str) {
    eprintln!("[bench {:>7.1}s] {msg}", START.elapsed().as_secs_f64());
}

static START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

const MIB: f64 = 1024.0;

fn sr_name(i: usize) -> String {
    format!("sr-{i:05}")
}

/// Fresh work directory for one phase.
fn workdir(cfg: &Config, name: &str) -> anyhow::Result<PathBuf> {
    let d = cfg.work.join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d)?;
    }
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

async fn create_namespaces(k: &Kapi, names: &[String]) -> anyhow::Result<()> {
    k.create_all(names.iter().map(|n| objects::namespace(n)).collect(), 8)
        .await
}

/// Creates `n` objects at `rate` per second (each stamped just before it is sent) and waits until
/// the watcher saw the synced Secret of each (at most `timeout`). Latencies in ms; a Secret never
/// seen counts as +inf.
async fn paced_creates(
    k: &Kapi,
    watcher: &Watcher,
    n: usize,
    rate: f64,
    timeout: Duration,
    dump: &std::path::Path,
    make: impl Fn(usize) -> (String, Value),
) -> anyhow::Result<Vec<f64>> {
    let t0 = Instant::now();
    let start_ns = unix_ns();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (key, obj) = make(i);
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            let sent = unix_ns();
            k.create(&obj).await.map(|_| (key, sent))
        }));
    }
    let mut sent: Vec<(String, u128)> = Vec::with_capacity(n);
    for t in tasks {
        sent.push(t.await??);
    }
    let keys: Vec<String> = sent.iter().map(|(k, _)| k.clone()).collect();
    let deadline = Instant::now() + timeout;
    while watcher.count_seen(&keys) < keys.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lat: Vec<f64> = sent
        .iter()
        .map(|(k, t)| match watcher.seen(k) {
            Some(s) => (s.saturating_sub(*t)) as f64 / 1e6,
            None => f64::INFINITY,
        })
        .collect();
    // Raw samples, for a closer look: sent (ms after the first), latency (ms), object.
    let rows: String = sent
        .iter()
        .zip(&lat)
        .map(|((k, t), l)| {
            format!(
                "{:.1}\t{l:.2}\t{k}\n",
                t.saturating_sub(start_ns) as f64 / 1e6
            )
        })
        .collect();
    std::fs::write(dump, rows)?;
    Ok(lat)
}

fn latency_figures(out: &mut RunFigures, prefix: &str, lat: &[f64]) {
    out.insert(
        format!("{prefix}_p50_ms"),
        stats::percentile(lat, 50.0).unwrap_or(f64::NAN),
    );
    out.insert(
        format!("{prefix}_p99_ms"),
        stats::percentile(lat, 99.0).unwrap_or(f64::NAN),
    );
    out.insert(
        format!("{prefix}_max_ms"),
        stats::max(lat).unwrap_or(f64::NAN),
    );
}

/// Baseline: a minimal client writing the same Secrets straight to a fresh emulator.
pub async fn baseline(
    cfg: &Config,
    run: usize,
    exe: &std::path::Path,
) -> anyhow::Result<RunFigures> {
    let dir = workdir(cfg, &format!("baseline-{run}"))?;
    let emu = EmulatorProc::start(&cfg.emulator, &cfg.repo.join("crds"), &dir)?;
    let k = Kapi::new(&emu.url)?;
    let nss: Vec<String> = (0..cfg.namespaces(cfg.refs)).map(ns_name).collect();
    create_namespaces(&k, &nss).await?;
    let nsn = nss.len();
    log(&format!(
        "baseline {run}: {} direct Secret writes",
        cfg.refs
    ));
    let t = Instant::now();
    k.create_range(0..cfg.refs, 16, |i| {
        objects::baseline_secret(&ns_name(i % nsn), &sr_name(i), cfg.keys)
    })
    .await?;
    let bulk = t.elapsed().as_secs_f64();
    let watcher = Watcher::start(exe, &emu.url, objects::BASELINE_SELECTOR, cfg.keys)?;
    let lat = paced_creates(
        &k,
        &watcher,
        cfg.creates,
        cfg.rate,
        Duration::from_secs(60),
        &dir.join("base-latency.tsv"),
        |i| {
            let ns = ns_name(i % nsn);
            let name = format!("g3a-{i:05}");
            (
                format!("{ns}/{name}"),
                objects::baseline_secret(&ns, &name, cfg.keys),
            )
        },
    )
    .await?;
    let mut out = RunFigures::new();
    out.insert("base_bulk_s".into(), bulk);
    latency_figures(&mut out, "base_lat", &lat);
    out.remove("base_lat_max_ms");
    log(&format!(
        "baseline {run}: bulk {bulk:.2}s, p50 {:.1} ms, p99 {:.1} ms",
        out["base_lat_p50_ms"], out["base_lat_p99_ms"]
    ));
    Ok(out)
}

async fn patch_stores(k: &Kapi, nss: &[String], patch: &Value) -> anyhow::Result<()> {
    for ns in nss {
        k.merge_patch("SecretStore", ns, objects::STORE, patch)
            .await?;
    }
    Ok(())
}

/// A fresh emulator with the pure-controller objects: stores, unrelated Secrets, SecretRefs.
pub async fn seeded_emulator(
    cfg: &Config,
    dir: &std::path::Path,
    run: usize,
) -> anyhow::Result<(EmulatorProc, Kapi, Vec<String>)> {
    let emu = EmulatorProc::start(&cfg.emulator, &cfg.repo.join("crds"), dir)?;
    let k = Kapi::new(&emu.url)?;
    let nss: Vec<String> = (0..cfg.namespaces(cfg.refs)).map(ns_name).collect();
    let nsn = nss.len();
    let mut all_ns = nss.clone();
    all_ns.push(objects::NOISE_NS.into());
    all_ns.push(objects::CONTROLLER_NS.into());
    create_namespaces(&k, &all_ns).await?;
    let stores: Vec<Value> = nss
        .iter()
        .map(|ns| objects::fake_store(ns, cfg.keys, "1h"))
        .collect();
    k.create_all(stores, 8).await?;
    let size = cfg.unrelated_kib * 1024;
    log(&format!(
        "run {run}: seeding {} unrelated {} KiB Secrets and {} SecretRefs",
        cfg.unrelated, cfg.unrelated_kib, cfg.refs
    ));
    k.create_range(0..cfg.unrelated, 4, |i| {
        objects::unrelated_secret(&format!("blob-{i:05}"), size, i as u64)
    })
    .await?;
    k.create_range(0..cfg.refs, 16, |i| {
        objects::fake_secretref(&ns_name(i % nsn), &sr_name(i), cfg.keys)
    })
    .await?;
    Ok((emu, k, nss))
}

/// G1, G2, G3, G7, G8 on one fresh emulator.
pub async fn controller_run(
    cfg: &Config,
    run: usize,
    exe: &std::path::Path,
    base: &RunFigures,
    ticks: f64,
) -> anyhow::Result<RunFigures> {
    let mut out = RunFigures::new();
    let dir = workdir(cfg, &format!("run-{run}"))?;
    let (emu, k, nss) = seeded_emulator(cfg, &dir, run).await?;
    let nsn = nss.len();
    let size = cfg.unrelated_kib * 1024;

    // First sync (informational) and G1 peak.
    let mut op = Operator::start(
        &cfg.operator,
        &emu.kubeconfig,
        &dir,
        "first",
        &cfg.operator_args,
    )?;
    let refs = cfg.refs as u64;
    let (t, _) = op
        .wait_metrics(Duration::from_secs(900), "the first sync", |m| {
            m.ready() >= refs
        })
        .await?;
    out.insert("first_sync_s".into(), t.as_secs_f64());
    if let Some(b) = base.get("base_bulk_s") {
        out.insert("first_sync_ratio".into(), t.as_secs_f64() / b);
    }
    log(&format!(
        "run {run}: first sync of {refs} in {:.2}s",
        t.as_secs_f64()
    ));

    // G1 steady: the largest RSS over a few samples after settling.
    tokio::time::sleep(cfg.settle).await;
    let mut steady = 0u64;
    for _ in 0..10 {
        steady = steady.max(op.sample(ticks)?.rss_kib);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // G8 steady CPU at the 1 h refresh, G7 writes meanwhile.
    let (s0, c0, m0) = (op.sample(ticks)?, k.counters().await?, op.metrics().await?);
    tokio::time::sleep(cfg.idle_window).await;
    let (s1, c1, m1) = (op.sample(ticks)?, k.counters().await?, op.metrics().await?);
    let idle_mcores = (s1.cpu_s - s0.cpu_s) / cfg.idle_window.as_secs_f64() * 1000.0;
    out.insert("g8_idle_mcores".into(), idle_mcores);
    // The bookkeeping's sizes (the operator refreshes them every 15 s).
    out.insert(
        "cache_bytes_per_ref".into(),
        m1.bookkeeping("cache_bytes") / m1.bookkeeping("cache_secretrefs").max(1.0),
    );
    out.insert("timers".into(), m1.bookkeeping("timers"));
    log(&format!(
        "run {run}: steady RSS {:.1} MiB, idle CPU {idle_mcores:.2} mcores, {} writes and {} reconciles in {:?}",
        steady as f64 / MIB,
        c1.writes - c0.writes,
        m1.reconciles_all() - m0.reconciles_all(),
        cfg.idle_window
    ));

    // G7 / G8 per refresh: periodic refreshes at a short interval (the store's refreshInterval), data
    // unchanged. The interval change itself makes every SecretRef due once; skip that cycle.
    let fast = format!("{}s", cfg.fast_interval.as_secs().max(1));
    patch_stores(&k, &nss, &json!({"spec": {"refreshInterval": fast}})).await?;
    tokio::time::sleep(cfg.fast_interval + cfg.settle).await;
    let (s0, c0, m0) = (op.sample(ticks)?, k.counters().await?, op.metrics().await?);
    let window = cfg.fast_interval * 2;
    tokio::time::sleep(window).await;
    let (s1, c1, m1) = (op.sample(ticks)?, k.counters().await?, op.metrics().await?);
    let refreshes = (m1.reconciles_all() - m0.reconciles_all()) as f64;
    let writes = (c1.writes - c0.writes) as f64;
    out.insert("g7_refreshes".into(), refreshes);
    out.insert("g7_writes_per_refresh".into(), writes / refreshes.max(1.0));
    out.insert(
        "g8_noop_ms".into(),
        (s1.cpu_s - s0.cpu_s) * 1000.0 / refreshes.max(1.0),
    );
    log(&format!(
        "run {run}: {refreshes} refreshes at {fast}: {writes} writes, {:.3} ms CPU each, {} provider calls",
        (s1.cpu_s - s0.cpu_s) * 1000.0 / refreshes.max(1.0),
        m1.provider_calls() - m0.provider_calls()
    ));
    patch_stores(&k, &nss, &json!({"spec": {"refreshInterval": "1h"}})).await?;
    let target = op.metrics().await?.reconciles_all() + refs;
    op.wait_metrics(Duration::from_secs(300), "the return to 1 h", |m| {
        m.reconciles_all() >= target
    })
    .await?;
    tokio::time::sleep(cfg.settle).await;
    let hwm_first = op.sample(ticks)?.hwm_kib;

    // G2: cold start with everything synced.
    op.stop(Duration::from_secs(10));
    let c0 = k.counters().await?;
    let mut op = Operator::start(
        &cfg.operator,
        &emu.kubeconfig,
        &dir,
        "restart",
        &cfg.operator_args,
    )?;
    let (t, m) = op
        .wait_metrics(Duration::from_secs(600), "the cold start", |m| {
            m.ready() >= refs && m.reconciles() >= refs
        })
        .await?;
    // From the spawn (process start included) to the scrape that showed all of them.
    let g2 = t.as_secs_f64();
    let c1 = k.counters().await?;
    out.insert("g2_s".into(), g2);
    out.insert("g2_writes".into(), (c1.writes - c0.writes) as f64);
    out.insert("g2_provider_calls".into(), m.provider_calls() as f64);
    if let Some(b) = base.get("base_bulk_s") {
        out.insert("g2_ratio".into(), g2 / b);
    }
    log(&format!(
        "run {run}: cold start {g2:.2}s, {} writes ({:?}; operator: {} Secret, {} status), {} provider calls, {} GET secrets",
        c1.writes - c0.writes,
        write_breakdown(&c0, &c1),
        m.secret_writes(),
        m.status_writes(),
        m.provider_calls(),
        c1.get("get secrets") - c0.get("get secrets")
    ));
    tokio::time::sleep(cfg.settle).await;
    out.insert("g2_peak_mib".into(), op.sample(ticks)?.hwm_kib as f64 / MIB);

    // G3: creates at `rate` with everything in steady state, seen by a separate watcher process.
    let watcher = Watcher::start(exe, &emu.url, objects::MANAGED_SELECTOR, cfg.keys)?;
    let idle_rate = idle_mcores / 1000.0;
    let s0 = op.sample(ticks)?;
    let t3 = Instant::now();
    let lat = paced_creates(
        &k,
        &watcher,
        cfg.creates,
        cfg.rate,
        Duration::from_secs(120),
        &dir.join("g3a-latency.tsv"),
        |i| {
            let ns = ns_name(i % nsn);
            let name = format!("g3a-{i:05}");
            (
                format!("{ns}/{name}"),
                objects::fake_secretref(&ns, &name, cfg.keys),
            )
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s1 = op.sample(ticks)?;
    let cpu = (s1.cpu_s - s0.cpu_s - idle_rate * t3.elapsed().as_secs_f64()).max(0.0);
    out.insert(
        "g8_create_ms".into(),
        cpu * 1000.0 / cfg.creates.max(1) as f64,
    );
    latency_figures(&mut out, "g3", &lat);
    log(&format!(
        "run {run}: G3 steady p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        out["g3_p50_ms"], out["g3_p99_ms"], out["g3_max_ms"]
    ));
    if let (Some(b50), Some(b99)) = (base.get("base_lat_p50_ms"), base.get("base_lat_p99_ms")) {
        out.insert("g3_p50_ratio".into(), out["g3_p50_ms"] / b50);
        out.insert("g3_p99_ratio".into(), out["g3_p99_ms"] / b99);
    }
    tokio::time::sleep(cfg.settle).await;

    // Every SecretRef due at once (a force-sync of every store), alone: how long the refresh of all
    // of them takes.
    let total = refs + cfg.creates as u64;
    let m0 = op.metrics().await?;
    let tb = Instant::now();
    let stamp = format!("bench-a-{}", unix_ns());
    patch_stores(
        &k,
        &nss,
        &json!({"metadata": {"annotations": {"secretsync.io/force-sync": stamp}}}),
    )
    .await?;
    let target = m0.reconciles_all() + total;
    op.wait_metrics(Duration::from_secs(300), "the due refreshes", |m| {
        m.reconciles_all() >= target
    })
    .await?;
    out.insert("g3due_bulk_s".into(), tb.elapsed().as_secs_f64());
    tokio::time::sleep(cfg.settle).await;

    // G3 again while every SecretRef is due at once.
    let stamp = format!("bench-b-{}", unix_ns());
    patch_stores(
        &k,
        &nss,
        &json!({"metadata": {"annotations": {"secretsync.io/force-sync": stamp}}}),
    )
    .await?;
    let lat = paced_creates(
        &k,
        &watcher,
        cfg.creates,
        cfg.rate,
        Duration::from_secs(120),
        &dir.join("g3b-latency.tsv"),
        |i| {
            let ns = ns_name(i % nsn);
            let name = format!("g3b-{i:05}");
            (
                format!("{ns}/{name}"),
                objects::fake_secretref(&ns, &name, cfg.keys),
            )
        },
    )
    .await?;
    latency_figures(&mut out, "g3due", &lat);
    log(&format!(
        "run {run}: G3 all-due p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; bulk done in {:.2}s",
        out["g3due_p50_ms"], out["g3due_p99_ms"], out["g3due_max_ms"], out["g3due_bulk_s"]
    ));
    drop(watcher);
    tokio::time::sleep(cfg.settle).await;

    // G1 growth: more unrelated Secrets.
    let before = op.sample(ticks)?.rss_kib;
    k.create_range(cfg.unrelated..cfg.unrelated + cfg.unrelated_more, 4, |i| {
        objects::unrelated_secret(&format!("blob-{i:05}"), size, i as u64)
    })
    .await?;
    tokio::time::sleep(cfg.settle).await;
    let after = op.sample(ticks)?;
    out.insert(
        "g1_growth_mib".into(),
        (after.rss_kib as f64 - before as f64) / MIB,
    );
    out.insert("g1_steady_mib".into(), steady as f64 / MIB);
    out.insert(
        "g1_peak_mib".into(),
        hwm_first.max(after.hwm_kib) as f64 / MIB,
    );
    log(&format!(
        "run {run}: RSS {:.1} → {:.1} MiB after {} more unrelated Secrets; peak {:.1} MiB (first process {:.1})",
        before as f64 / MIB,
        after.rss_kib as f64 / MIB,
        cfg.unrelated_more,
        after.hwm_kib as f64 / MIB,
        hwm_first as f64 / MIB
    ));
    op.stop(Duration::from_secs(10));
    drop(emu);
    Ok(out)
}

fn write_breakdown(a: &crate::kapi::Counters, b: &crate::kapi::Counters) -> HashMap<String, u64> {
    b.requests
        .iter()
        .filter(|(k, _)| {
            ["create ", "update ", "patch ", "delete "]
                .iter()
                .any(|v| k.starts_with(v))
        })
        .filter_map(|(k, v)| {
            let d = v.as_u64()? - a.get(k);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// G4: AWS provider calls per refresh cycle with moto behind the counting proxy.
pub async fn aws_run(cfg: &Config) -> anyhow::Result<Vec<RunFigures>> {
    let dir = workdir(cfg, "aws")?;
    let moto = Moto::launch(MotoOptions {
        bin: cfg.repo.join(".venv-test/bin/moto_server"),
        log: Some(dir.join("moto.log")),
        attempts: 1,
        ready_timeout: Duration::from_secs(30),
    })
    .await?;
    // The counting proxy (it also enforces AWS's 20-id cap on BatchGetSecretValue; moto has none).
    let proxy = Proxy::with_upstream_timeout(&moto.url, Duration::from_secs(60)).await;
    log(&format!("G4: {} keys in moto", cfg.aws_keys));
    moto.create_secrets(
        cfg.aws_keys,
        |j| format!("/bench/k{j}"),
        |j| format!("value-{j}"),
    )
    .await?;
    let emu = EmulatorProc::start(&cfg.emulator, &cfg.repo.join("crds"), &dir)?;
    let k = Kapi::new(&emu.url)?;
    let nss: Vec<String> = (0..cfg.namespaces(cfg.aws_refs)).map(ns_name).collect();
    let nsn = nss.len();
    let mut all = nss.clone();
    all.push(objects::CONTROLLER_NS.into());
    create_namespaces(&k, &all).await?;
    let interval = format!("{}s", cfg.aws_interval.as_secs().max(1));
    for ns in &nss {
        k.create(&objects::aws_creds(ns)).await?;
        k.create(&objects::aws_store(ns, &proxy.url, &interval))
            .await?;
    }
    k.create_range(0..cfg.aws_refs, 16, |i| {
        objects::secretref(
            &ns_name(i % nsn),
            &sr_name(i),
            &format!("/bench/k{}", i % cfg.aws_keys.max(1)),
        )
    })
    .await?;
    log(&format!(
        "G4: {} SecretRefs on {} keys, refresh {interval}",
        cfg.aws_refs, cfg.aws_keys
    ));
    let mut op = Operator::start(
        &cfg.operator,
        &emu.kubeconfig,
        &dir,
        "aws",
        &cfg.operator_args,
    )?;
    let refs = cfg.aws_refs as u64;
    let (t, _) = op
        .wait_metrics(Duration::from_secs(900), "the first AWS sync", |m| {
            m.ready() >= refs
        })
        .await?;
    let first = proxy.calls();
    log(&format!(
        "G4: first sync in {:.1}s with {} calls ({:?})",
        t.as_secs_f64(),
        first.total(),
        first.by_op
    ));
    // Two cycles to learn each key's request pattern, then measure cycle by cycle.
    tokio::time::sleep(cfg.aws_interval * 2).await;
    let mut runs = Vec::new();
    for c in 0..cfg.aws_cycles {
        let a = proxy.calls();
        tokio::time::sleep(cfg.aws_interval).await;
        let b = proxy.calls();
        let calls = b.reads() - a.reads();
        let ids = b.batch_ids - a.batch_ids;
        log(&format!(
            "G4: cycle {c}: {calls} read calls ({ids} ids in batches; all calls {:?})",
            b.by_op
        ));
        let mut f = RunFigures::new();
        f.insert("g4_calls_per_cycle".into(), calls as f64);
        f.insert("g4_calls_per_day".into(), calls as f64 * 24.0);
        if c == 0 {
            f.insert("g4_first_sync_calls".into(), first.reads() as f64);
        }
        runs.push(f);
    }
    op.stop(Duration::from_secs(10));
    drop((emu, proxy, moto));
    Ok(runs)
}

/// A Vault KV v2 endpoint that answers every read with a `size`-byte value (an attacker's store):
/// token lookups succeed, `GET /v1/secret/data/<key>` returns `{"data":{"data":{"v":"xxx…"}}}`.
async fn oversized_vault(size: usize) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let body = std::sync::Arc::new(
        json!({"data": {"data": {"v": "x".repeat(size)}, "metadata": {"version": 1}}})
            .to_string()
            .into_bytes(),
    );
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let Some(req) = http::read_request(&mut sock).await else {
                    return;
                };
                let lookup = req.path.contains("/v1/auth/token/lookup-self");
                let out: &[u8] = if lookup {
                    br#"{"data":{"ttl":0,"renewable":false}}"#
                } else {
                    &body
                };
                http::respond(&mut sock, 200, http::JSON, &[], out, out.len()).await;
            });
        }
    });
    Ok((url, task))
}

/// DESIGN §2.8 under attack: one tenant SecretRef naming twelve keys whose values are 6 MB each
/// (the answers are cut off while read, the reconcile stops at the Secret limit, nothing is cached).
/// Figures: the operator's peak RSS before and after several rounds of the attack.
pub async fn attack_run(cfg: &Config, ticks: f64) -> anyhow::Result<RunFigures> {
    let dir = workdir(cfg, "attack")?;
    let (vault, server) = oversized_vault(6 << 20).await?;
    let emu = EmulatorProc::start(&cfg.emulator, &cfg.repo.join("crds"), &dir)?;
    let k = Kapi::new(&emu.url)?;
    let ns = "bench-attack";
    create_namespaces(&k, &[ns.to_string(), objects::CONTROLLER_NS.to_string()]).await?;
    k.create(&json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "vault-token", "namespace": ns}, "stringData": {"token": "t"}}))
        .await?;
    k.create(
        &json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretStore",
        "metadata": {"name": "vault", "namespace": ns},
        "spec": {"provider": {"vault": {"server": vault, "path": "secret", "version": "v2",
            "auth": {"token": {"secretRef": {"name": "vault-token", "key": "token"}}}}}}}),
    )
    .await?;
    k.create(&objects::fake_store(ns, 1, "1h")).await?;
    k.create(&objects::fake_secretref(ns, "sr-0", 1)).await?;
    let mut op = Operator::start(
        &cfg.operator,
        &emu.kubeconfig,
        &dir,
        "attack",
        &cfg.operator_args,
    )?;
    op.wait_metrics(Duration::from_secs(60), "the first sync", |m| {
        m.ready() >= 1
    })
    .await?;
    tokio::time::sleep(cfg.settle).await;
    let before = op.sample(ticks)?.hwm_kib;
    let data: Vec<Value> = (0..12)
        .map(|i| json!({"secretKey": format!("k{i}"), "remoteRef": {"key": format!("big/{i}"), "property": "v"}}))
        .collect();
    k.create(
        &json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretRef",
        "metadata": {"name": "attack", "namespace": ns},
        "spec": {"storeRef": {"name": "vault"}, "refreshInterval": "5s", "data": data}}),
    )
    .await?;
    log("attack: 12 values of 6 MB behind one SecretRef; 30 s of refreshes and backoff steps");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = op.sample(ticks)?.hwm_kib;
    let sref = k
        .get(&format!(
            "/apis/secretsync.io/v1alpha1/namespaces/{ns}/secretrefs/attack"
        ))
        .await?;
    let reason = sref["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["reason"].as_str())
        .unwrap_or("")
        .to_string();
    if reason != "SecretTooLarge" {
        bail!("the attack SecretRef is {reason:?}, not SecretTooLarge");
    }
    op.stop(Duration::from_secs(10));
    server.abort();
    drop(emu);
    let mut f = RunFigures::new();
    f.insert(
        "attack_growth_mib".into(),
        after.saturating_sub(before) as f64 / 1024.0,
    );
    f.insert("attack_peak_mib".into(), after as f64 / 1024.0);
    Ok(f)
}

/// A seeded emulator for manual profiling: prints its kubeconfig and holds until stdin closes
/// (or `hold`).
pub async fn hold_env(cfg: &Config, hold: Duration) -> anyhow::Result<()> {
    let dir = workdir(cfg, "env")?;
    let (emu, _k, _) = seeded_emulator(cfg, &dir, 0).await?;
    println!("KUBECONFIG={}", emu.kubeconfig.display());
    println!(
        "operator flags: controller --allow-inline-secrets --pod-namespace {}",
        objects::CONTROLLER_NS
    );
    let _ = tokio::time::timeout(
        hold,
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            while std::io::stdin()
                .read_line(&mut s)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                s.clear();
            }
        }),
    )
    .await;
    drop(emu);
    Ok(())
}

/// Every selected scenario; returns per-run figures (G4 cycles merged into the runs by index).
pub async fn run_all(cfg: &Config) -> anyhow::Result<Vec<RunFigures>> {
    let exe = std::env::current_exe().context("own executable")?;
    for b in [&cfg.operator, &cfg.emulator] {
        if !b.exists() {
            bail!(
                "{} is missing: build it first (make bench does)",
                b.display()
            );
        }
    }
    let ticks = sys::clock_ticks();
    let mut runs: Vec<RunFigures> = vec![RunFigures::new(); cfg.runs.max(1)];
    if cfg.wants("g4") {
        for (i, f) in aws_run(cfg).await?.into_iter().enumerate() {
            if i >= runs.len() {
                runs.push(RunFigures::new());
            }
            runs[i].extend(f);
        }
    }
    for r in 0..cfg.runs.max(1) {
        let base = if cfg.wants("base") || cfg.wants("controller") {
            baseline(cfg, r, &exe).await?
        } else {
            RunFigures::new()
        };
        runs[r].extend(base.clone());
        if cfg.wants("controller") {
            let f = controller_run(cfg, r, &exe, &base, ticks).await?;
            runs[r].extend(f);
        }
        if cfg.wants("attack") {
            runs[r].extend(attack_run(cfg, ticks).await?);
        }
    }
    Ok(runs)
}
