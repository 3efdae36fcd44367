//! `secretsync-bench shards`: static shards (docs/scaling.md) at scale. One emulator holds `refs`
//! SecretRefs on `fake` stores, split into `shards` by the label `secretsync.io/shard=<a|b|…>` (by
//! namespace: namespace `i` is in shard `i % shards`); each shard runs `replicas` controller processes
//! with its own Lease (`secretsync-shard-<s>`) and `--watch-label-selector`.
//!
//! Phases, each measured from outside the processes (metrics, `/proc`, the Lease, the per-process
//! audit files, the emulator's request counters and objects):
//! 1. First sync of everything: time, RSS and CPU of each process (leader and standby), provider calls
//!    and writes per process, and the double-write check: every managed Secret must be written by
//!    exactly one process (the leader of its shard), once (from the audit files, whose `write`
//!    records name the Secret), and the emulator must have seen as many Secret writes as SecretRefs.
//! 2. Hand-over: `kill -9` of shard 0's leader; time until the standby holds the Lease, and until it
//!    has verified the shard (its Ready gauge back at the shard's size). Then new data in one
//!    namespace of the shard: first through the store alone (data and the store's force-sync
//!    annotation; how many Secrets the new leader rewrites within 10 s), then with the force-sync
//!    annotation of each SecretRef there (how long until all are rewritten).
//! 3. Split brain: the data of `split_namespaces` namespaces of shard 1 changes (`v2`); their
//!    leader, which has read those stores before, rewrites their Secrets and gets SIGSTOP part-way.
//!    The standby takes over; the data changes again (`v3`, with force-sync on each SecretRef) and
//!    the new leader writes it while the old one is still stopped. Then SIGCONT: every write the old
//!    leader makes after resuming is counted (its audit file is frozen while it is stopped, so every
//!    record past its size at SIGCONT is a write completed after it; the emulator's Secret writes
//!    minus the new leader's tell the same from the server's side), and every Secret not holding
//!    `v3` at the end is a stale write that stuck.
//!
//! Prints a Markdown report and writes it with a JSON file under the output directory. Asserts
//! nothing.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine;
use serde_json::{Value, json};

use crate::kapi::{Counters, EmulatorProc, Kapi};
use crate::objects::{self, ns_name};
use crate::operator::{Metrics, Operator};
use crate::sys;

/// The label that assigns a SecretRef to a shard (docs/scaling.md).
const SHARD_LABEL: &str = "secretsync.io/shard";
const MIB: f64 = 1024.0;

/// What a `shards` run needs to know.
#[derive(Clone, Debug)]
pub struct Config {
    /// SecretRefs (and managed Secrets).
    pub refs: usize,
    /// Shards (1..=26).
    pub shards: usize,
    /// Controller processes per shard (leader + standbys).
    pub replicas: usize,
    /// Remote keys per fake store.
    pub keys: usize,
    /// SecretRefs per namespace (one store per namespace).
    pub per_ns: usize,
    /// Unrelated 128 KiB-style Secrets present from the start.
    pub unrelated: usize,
    /// Size of an unrelated Secret, KiB.
    pub unrelated_kib: usize,
    /// `--leader-elect-lease-duration`, seconds.
    pub lease_duration: u64,
    /// `--leader-elect-renew-grace`, seconds.
    pub renew_grace: u64,
    /// Namespaces of shard 1 whose data changes in the split-brain phase.
    pub split_namespaces: usize,
    /// Rounds of the split-brain phase.
    pub split_rounds: usize,
    /// How long the split-brain phase keeps the old leader stopped, at least.
    pub pause: Duration,
    /// Pause after each phase.
    pub settle: Duration,
    /// Longest wait for the first sync.
    pub timeout: Duration,
    /// Repository root.
    pub repo: PathBuf,
    /// `secretsync` binary.
    pub operator: PathBuf,
    /// `kube-emulator` binary.
    pub emulator: PathBuf,
    /// Work directory (logs, audit files, kubeconfig).
    pub work: PathBuf,
    /// Extra operator flags.
    pub operator_args: Vec<String>,
}

impl Config {
    fn namespaces(&self) -> usize {
        self.refs.div_ceil(self.per_ns.max(1)).max(1)
    }
    /// Renew period of the lease holder: it renews `renew_grace` before expiry.
    fn renew_period(&self) -> u64 {
        self.lease_duration.saturating_sub(self.renew_grace).max(1)
    }
    /// Shown in the report.
    pub fn to_json(&self) -> Value {
        json!({
            "refs": self.refs, "shards": self.shards, "replicas_per_shard": self.replicas,
            "keys_per_store": self.keys, "refs_per_namespace": self.per_ns,
            "unrelated": self.unrelated, "unrelated_kib": self.unrelated_kib,
            "lease_duration_s": self.lease_duration, "renew_grace_s": self.renew_grace,
            "renew_period_s": self.renew_period(), "pause_s": self.pause.as_secs_f64(),
            "split_namespaces": self.split_namespaces, "split_rounds": self.split_rounds,
            "settle_s": self.settle.as_secs_f64(), "operator_args": self.operator_args,
        })
    }
}

fn log(msg: &str) {
    eprintln!("[shards {:>7.1}s] {msg}", START.elapsed().as_secs_f64());
}

static START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

fn shard_name(s: usize) -> String {
    char::from(b'a' + (s % 26) as u8).to_string()
}

fn sr_name(i: usize) -> String {
    format!("sr-{i:05}")
}

/// One controller process.
struct Proc {
    op: Operator,
    shard: usize,
    identity: String,
    audit: PathBuf,
    killed: bool,
}

/// The figures of a run: per-process rows and named figures (JSON and Markdown).
pub struct Report {
    /// JSON document.
    pub json: Value,
    /// Markdown tables.
    pub markdown: String,
}

/// The shard of namespace `ns_index`.
fn shard_of_ns(ns_index: usize, shards: usize) -> usize {
    ns_index % shards.max(1)
}

/// The shard of a `namespace/name` audit target (`bench-<i>/...`).
fn shard_of_target(target: &str, shards: usize) -> Option<usize> {
    let ns = target.split('/').next()?;
    let i: usize = ns.strip_prefix("bench-")?.parse().ok()?;
    Some(shard_of_ns(i, shards))
}

/// Merge patch of a fake store: its data becomes `value-<j>-<suffix>`, and a new force-sync stamp.
fn rotate_patch(keys: usize, suffix: &str, stamp: &str) -> Value {
    let data: Vec<Value> = (0..keys)
        .map(|j| json!({"key": format!("k{j}"), "value": format!("value-{j}-{suffix}"), "version": suffix}))
        .collect();
    json!({
        "metadata": {"annotations": {"secretsync.io/force-sync": stamp}},
        "spec": {"provider": {"fake": {"data": data}}}
    })
}

/// `write` records of an audit file from byte `from` on: their targets (`namespace/name`) and data
/// HMACs (equal data, equal HMAC: every process uses the same key).
fn audit_writes(path: &Path, from: u64) -> anyhow::Result<Vec<(String, String)>> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Ok(Vec::new());
    };
    f.seek(SeekFrom::Start(from))?;
    let mut out = Vec::new();
    for line in BufReader::new(f).lines() {
        let line = line?;
        if !line.contains(r#""action":"write""#) {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("an audit record of {}", path.display()))?;
        if let Some(t) = v["target"].as_str() {
            out.push((
                t.to_string(),
                v["hmac"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    Ok(out)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

async fn lease_holder(k: &Kapi, shard: usize) -> Option<(String, i64)> {
    let v = k
        .get(&format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases/secretsync-shard-{}",
            objects::CONTROLLER_NS,
            shard_name(shard)
        ))
        .await
        .ok()?;
    let holder = v["spec"]["holderIdentity"].as_str()?.to_string();
    Some((holder, v["spec"]["leaseTransitions"].as_i64().unwrap_or(0)))
}

/// Waits for `done`, checking every `every`, at most `timeout`; the time it took.
async fn until<F, Fut>(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut done: F,
) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if done().await? {
            return Ok(t0.elapsed());
        }
        tokio::time::sleep(every).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

async fn scrape(p: &Proc) -> Metrics {
    p.op.metrics().await.unwrap_or_default()
}

/// Managed Secrets of the given namespaces whose `value` is not `value-<n % keys>-<suffix>`.
async fn stale_secrets(
    k: &Kapi,
    nss: &[String],
    keys: usize,
    suffix: &str,
) -> anyhow::Result<(usize, usize)> {
    let (mut seen, mut stale) = (0, 0);
    for ns in nss {
        let list = k
            .get(&format!(
                "/api/v1/namespaces/{ns}/secrets?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dsecretsync"
            ))
            .await?;
        for s in list["items"].as_array().into_iter().flatten() {
            seen += 1;
            let name = s["metadata"]["name"].as_str().unwrap_or_default();
            let want = objects::name_number(name).map(|n| format!("value-{}-{suffix}", n % keys));
            let got = s["data"]["value"]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
            if want.map(String::into_bytes) != got {
                stale += 1;
            }
        }
    }
    Ok((seen, stale))
}

/// Sets the force-sync annotation of SecretRefs `indices` (16 requests in flight).
async fn stamp_refs(k: &Kapi, nsn: usize, indices: &[usize], stamp: &str) -> anyhow::Result<()> {
    use futures::StreamExt;
    let patch = json!({"metadata": {"annotations": {"secretsync.io/force-sync": stamp}}});
    let mut s = futures::stream::iter(indices.iter().map(|i| {
        let (k, patch) = (k.clone(), &patch);
        async move {
            k.merge_patch("SecretRef", &ns_name(i % nsn), &sr_name(*i), patch)
                .await
        }
    }))
    .buffer_unordered(16);
    while let Some(r) = s.next().await {
        r?;
    }
    Ok(())
}

/// Secret and status writes so far of every live process but `skip`.
async fn others_writes(procs: &[Proc], skip: usize) -> (u64, u64) {
    let (mut sec, mut st) = (0, 0);
    for (i, p) in procs.iter().enumerate() {
        if i != skip && !p.killed {
            let m = scrape(p).await;
            sec += m.secret_writes();
            st += m.status_writes();
        }
    }
    (sec, st)
}

fn counter_delta(a: &Counters, b: &Counters, key: &str) -> u64 {
    b.get(key).saturating_sub(a.get(key))
}

/// Runs the three phases.
pub async fn run(cfg: &Config) -> anyhow::Result<Report> {
    for b in [&cfg.operator, &cfg.emulator] {
        if !b.exists() {
            bail!(
                "{} is missing: build it first (make bench-shards does)",
                b.display()
            );
        }
    }
    if cfg.shards == 0 || cfg.shards > 26 || cfg.replicas == 0 {
        bail!("--shards must be 1..=26 and --replicas at least 1");
    }
    let ticks = sys::clock_ticks();
    let dir = cfg.work.join("shards");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let mut fig: Vec<(String, String, String)> = Vec::new(); // (figure, value, bar)
    let mut add = |f: &str, v: String, bar: &str| fig.push((f.into(), v, bar.into()));

    // Seeding.
    let emu = EmulatorProc::start(&cfg.emulator, &cfg.repo.join("crds"), &dir)?;
    let k = Kapi::new(&emu.url)?;
    let nsn = cfg.namespaces();
    let nss: Vec<String> = (0..nsn).map(ns_name).collect();
    let mut all_ns = nss.clone();
    all_ns.push(objects::NOISE_NS.into());
    all_ns.push(objects::CONTROLLER_NS.into());
    k.create_all(all_ns.iter().map(|n| objects::namespace(n)).collect(), 8)
        .await?;
    k.create_all(
        nss.iter()
            .map(|ns| objects::fake_store(ns, cfg.keys, "1h"))
            .collect(),
        8,
    )
    .await?;
    let mut per_shard = vec![0usize; cfg.shards];
    for i in 0..cfg.refs {
        per_shard[shard_of_ns(i % nsn, cfg.shards)] += 1;
    }
    log(&format!(
        "seeding {} SecretRefs in {nsn} namespaces, {} shard(s) {:?}, {} unrelated Secrets",
        cfg.refs, cfg.shards, per_shard, cfg.unrelated
    ));
    let t = Instant::now();
    let size = cfg.unrelated_kib * 1024;
    k.create_range(0..cfg.unrelated, 4, |i| {
        objects::unrelated_secret(&format!("blob-{i:05}"), size, i as u64)
    })
    .await?;
    k.create_range(0..cfg.refs, 16, |i| {
        let ns_i = i % nsn;
        let mut o = objects::fake_secretref(&ns_name(ns_i), &sr_name(i), cfg.keys);
        o["metadata"]["labels"] = json!({SHARD_LABEL: shard_name(shard_of_ns(ns_i, cfg.shards))});
        o
    })
    .await?;
    let seed_s = t.elapsed().as_secs_f64();
    log(&format!("seeded in {seed_s:.1}s"));
    add(
        "seeding (SecretRefs created through the API, 16 in flight)",
        format!("{seed_s:.1} s"),
        "",
    );

    // Phase 1: every process at once, like a rollout of every shard's Deployment.
    let c_start = k.counters().await?;
    let mut procs: Vec<Proc> = Vec::new();
    let t0 = Instant::now();
    for s in 0..cfg.shards {
        for r in 0..cfg.replicas {
            let sn = shard_name(s);
            let identity = format!("secretsync-shard-{sn}-{r}");
            let tag = format!("{sn}-{r}");
            let mut extra: Vec<String> = [
                "--leader-elect",
                "--leader-elect-lease-name",
                &format!("secretsync-shard-{sn}"),
                "--leader-elect-lease-duration",
                &format!("{}s", cfg.lease_duration),
                "--leader-elect-renew-grace",
                &format!("{}s", cfg.renew_grace),
                "--watch-label-selector",
                &format!("{SHARD_LABEL}={sn}"),
                "--pod-name",
                &identity,
            ]
            .iter()
            .map(|x| x.to_string())
            .collect();
            extra.extend(cfg.operator_args.iter().cloned());
            let op = Operator::start(&cfg.operator, &emu.kubeconfig, &dir, &tag, &extra)?;
            procs.push(Proc {
                op,
                shard: s,
                identity,
                audit: dir.join(format!("audit-{tag}.jsonl")),
                killed: false,
            });
        }
    }
    log(&format!(
        "started {} controller processes ({} shard(s) × {} replica(s)); lease {}s, renew grace {}s",
        procs.len(),
        cfg.shards,
        cfg.replicas,
        cfg.lease_duration,
        cfg.renew_grace
    ));
    let mut synced_at: Vec<Option<Duration>> = vec![None; cfg.shards];
    while synced_at.iter().any(Option::is_none) {
        if t0.elapsed() > cfg.timeout {
            bail!(
                "first sync not done after {:?} (shards synced: {synced_at:?})",
                cfg.timeout
            );
        }
        for p in procs.iter_mut() {
            if p.op.exited() {
                bail!(
                    "{} exited during the first sync; see {}",
                    p.identity,
                    p.op.log.display()
                );
            }
        }
        let mut ready = vec![0u64; cfg.shards];
        for p in &procs {
            ready[p.shard] += scrape(p).await.ready();
        }
        for s in 0..cfg.shards {
            if synced_at[s].is_none() && ready[s] >= per_shard[s] as u64 {
                synced_at[s] = Some(t0.elapsed());
                log(&format!(
                    "shard {} synced ({} SecretRefs) at {:.1}s",
                    shard_name(s),
                    per_shard[s],
                    t0.elapsed().as_secs_f64()
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let first_sync = synced_at
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or_default();
    tokio::time::sleep(cfg.settle).await;
    let c_synced = k.counters().await?;
    let emu_rss = sys::sample(emu.pid(), ticks).map_or(0.0, |s| s.rss_kib as f64 / MIB);

    // Who leads each shard.
    let mut leader = vec![usize::MAX; cfg.shards];
    let mut transitions = vec![0i64; cfg.shards];
    for s in 0..cfg.shards {
        let (holder, tr) = lease_holder(&k, s)
            .await
            .with_context(|| format!("no holder of shard {}'s Lease", shard_name(s)))?;
        // The first acquisition counts as one transition.
        transitions[s] = (tr - 1).max(0);
        leader[s] = procs
            .iter()
            .position(|p| p.identity == holder)
            .with_context(|| format!("lease holder {holder} is not one of ours"))?;
    }
    let is_leader = |i: usize| leader.contains(&i);

    // Per-process figures after the first sync; the audit's write records.
    let mut rows = Vec::new();
    let mut writers: HashMap<String, Vec<usize>> = HashMap::with_capacity(cfg.refs);
    let mut foreign_writes = 0usize;
    let mut standby_writes = 0u64;
    let mut standby_calls = 0u64;
    for (i, p) in procs.iter().enumerate() {
        let m = scrape(p).await;
        let smp = p.op.sample(ticks)?;
        let targets = audit_writes(&p.audit, 0)?;
        for (t, _) in &targets {
            if shard_of_target(t, cfg.shards) != Some(p.shard) {
                foreign_writes += 1;
            }
            writers.entry(t.clone()).or_default().push(i);
        }
        if !is_leader(i) {
            standby_writes += m.secret_writes() + m.status_writes() + targets.len() as u64;
            standby_calls += m.provider_calls();
        }
        rows.push(json!({
            "process": p.identity, "shard": shard_name(p.shard),
            "role": if is_leader(i) { "leader" } else { "standby" },
            "shard_refs": per_shard[p.shard],
            "rss_mib": smp.rss_kib as f64 / MIB, "peak_mib": smp.hwm_kib as f64 / MIB,
            "cpu_s": smp.cpu_s,
            "provider_calls": m.provider_calls(), "secret_writes": m.secret_writes(),
            "status_writes": m.status_writes(), "audit_writes": targets.len(),
            "ready": m.ready(),
        }));
    }
    let written_by_two = writers
        .values()
        .filter(|w| {
            let mut v = (*w).clone();
            v.sort_unstable();
            v.dedup();
            v.len() > 1
        })
        .count();
    let written_twice = writers.values().filter(|w| w.len() > 1).count();
    let audit_total: usize = writers.values().map(Vec::len).sum();
    let emu_secret_writes = counter_delta(&c_start, &c_synced, "patch secrets")
        + counter_delta(&c_start, &c_synced, "create secrets");
    log(&format!(
        "first sync {:.1}s; {} Secrets written ({} audit write records, emulator {} Secret writes); \
         written by two processes: {written_by_two}, written twice: {written_twice}, \
         by another shard: {foreign_writes}; standbys: {standby_writes} writes, {standby_calls} provider calls",
        first_sync.as_secs_f64(),
        writers.len(),
        audit_total,
        emu_secret_writes
    ));
    add(
        &format!(
            "first sync of all {} SecretRefs (processes started → every shard Ready)",
            cfg.refs
        ),
        format!("{:.1} s", first_sync.as_secs_f64()),
        "",
    );
    for (s, t) in synced_at.iter().enumerate() {
        add(
            &format!(
                "  shard {} ({} SecretRefs) Ready",
                shard_name(s),
                per_shard[s]
            ),
            format!("{:.1} s", t.unwrap_or_default().as_secs_f64()),
            "",
        );
    }
    add(
        "kube-emulator RSS after the first sync (test infrastructure, for scale)",
        format!("{emu_rss:.0} MiB"),
        "",
    );
    add(
        "leader changes during the first sync (Lease transitions after the first acquisition)",
        transitions.iter().sum::<i64>().to_string(),
        "",
    );
    add(
        "managed Secrets written / audit write records / emulator Secret writes",
        format!("{} / {audit_total} / {emu_secret_writes}", writers.len()),
        &format!("{0} / {0} / {0}", cfg.refs),
    );
    add(
        "Secrets written by more than one process",
        written_by_two.to_string(),
        "0",
    );
    add(
        "Secrets written more than once",
        written_twice.to_string(),
        "0",
    );
    add(
        "writes to another shard's Secrets",
        foreign_writes.to_string(),
        "0",
    );
    add(
        "standbys: writes (Secret + status + audit) / provider calls",
        format!("{standby_writes} / {standby_calls}"),
        "0 / 0",
    );

    // Phase 2: kill -9 shard 0's leader.
    let hs = 0usize;
    let la = leader[hs];
    let sa = procs
        .iter()
        .enumerate()
        .position(|(i, p)| p.shard == hs && i != la)
        .filter(|_| cfg.replicas > 1);
    let bar_handover = cfg.lease_duration + cfg.renew_period();
    let mut handover = json!(null);
    if let Some(sa) = sa {
        let sn = shard_name(hs);
        let m_sa0 = scrape(&procs[sa]).await;
        log(&format!(
            "kill -9 {} (leader of shard {sn})",
            procs[la].identity
        ));
        let t_kill = Instant::now();
        procs[la].op.kill_now();
        procs[la].killed = true;
        let want = procs[sa].identity.clone();
        let lease_t = until(
            Duration::from_secs(120),
            Duration::from_millis(50),
            "the standby to hold the lease",
            || {
                let (k, want) = (k.clone(), want.clone());
                async move { Ok(lease_holder(&k, hs).await.is_some_and(|(h, _)| h == want)) }
            },
        )
        .await?;
        let target = per_shard[hs] as u64;
        let sa_ref = &procs[sa];
        let ready_t = until(
            Duration::from_secs(900),
            Duration::from_millis(100),
            "the new leader to verify its shard",
            || async move { Ok(scrape(sa_ref).await.ready() >= target) },
        )
        .await
        .map(|_| t_kill.elapsed())?;
        let m_sa1 = scrape(sa_ref).await;
        log(&format!(
            "shard {sn}: lease after {:.2}s, Ready again after {:.1}s ({} provider calls, {} Secret writes meanwhile)",
            lease_t.as_secs_f64(),
            ready_t.as_secs_f64(),
            m_sa1.provider_calls() - m_sa0.provider_calls(),
            m_sa1.secret_writes() - m_sa0.secret_writes(),
        ));
        // Prove that it writes: new data in one namespace of the shard. First the store alone (data
        // and the store's force-sync annotation), then the SecretRefs' own force-sync annotation.
        let ns0_i = (0..nsn)
            .find(|i| shard_of_ns(*i, cfg.shards) == hs)
            .unwrap_or(0);
        let ns0 = ns_name(ns0_i);
        let refs0: Vec<usize> = (0..cfg.refs).filter(|i| i % nsn == ns0_i).collect();
        let n0 = refs0.len() as u64;
        k.merge_patch(
            "SecretStore",
            &ns0,
            objects::STORE,
            &rotate_patch(cfg.keys, "v2", "handover"),
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (seen_s, stale_s) =
            stale_secrets(&k, std::slice::from_ref(&ns0), cfg.keys, "v2").await?;
        log(&format!(
            "shard {sn}: store data and store force-sync changed in {ns0}: after 10 s, {} of {seen_s} Secrets hold the new data",
            seen_s - stale_s
        ));
        let t_p = Instant::now();
        stamp_refs(&k, nsn, &refs0, "handover").await?;
        let ns0_list = [ns0.clone()];
        let write_t = until(
            Duration::from_secs(300),
            Duration::from_millis(100),
            "the new leader to rewrite a namespace",
            || {
                let (k, ns0_list) = (k.clone(), ns0_list.clone());
                async move { Ok(stale_secrets(&k, &ns0_list, cfg.keys, "v2").await?.1 == 0) }
            },
        )
        .await
        .unwrap_or_else(|_| t_p.elapsed());
        let (seen, stale) = stale_secrets(&k, std::slice::from_ref(&ns0), cfg.keys, "v2").await?;
        log(&format!(
            "shard {sn}: SecretRef force-sync: {n0} Secrets of {ns0} rewritten in {:.2}s ({} of {seen} not holding the new data)",
            write_t.as_secs_f64(),
            stale
        ));
        add(
            &format!(
                "hand-over: store data + store force-sync changed in {ns0} → Secrets rewritten by the new leader within 10 s"
            ),
            format!("{} of {seen_s}", seen_s - stale_s),
            "",
        );
        add(
            &format!("hand-over: kill -9 of shard {sn}'s leader → standby holds the Lease"),
            format!("{:.2} s", lease_t.as_secs_f64()),
            &format!(
                "≤ {bar_handover} s (lease {} s + renew period {} s)",
                cfg.lease_duration,
                cfg.renew_period()
            ),
        );
        add(
            &format!(
                "hand-over: kill → new leader has verified all {} SecretRefs of its shard (Ready)",
                per_shard[hs]
            ),
            format!("{:.1} s", ready_t.as_secs_f64()),
            "",
        );
        add(
            "hand-over: provider calls / Secret writes of the new leader while verifying",
            format!(
                "{} / {}",
                m_sa1.provider_calls() - m_sa0.provider_calls(),
                m_sa1.secret_writes() - m_sa0.secret_writes()
            ),
            "",
        );
        add(
            &format!(
                "hand-over: then force-sync on the {n0} SecretRefs of {ns0} → rewritten by the new leader"
            ),
            format!("{:.2} s ({stale} of {seen} stale)", write_t.as_secs_f64()),
            "",
        );
        handover = json!({
            "shard": sn, "killed": procs[la].identity, "new_leader": procs[sa].identity,
            "lease_s": lease_t.as_secs_f64(), "ready_s": ready_t.as_secs_f64(),
            "bar_s": bar_handover, "rewrite_namespace": ns0, "rewrite_refs": n0,
            "rewrite_s": write_t.as_secs_f64(), "rewrite_stale": stale,
            "store_only_rewritten_10s": seen_s - stale_s, "store_only_checked": seen_s,
            "verify_provider_calls": m_sa1.provider_calls() - m_sa0.provider_calls(),
            "verify_secret_writes": m_sa1.secret_writes() - m_sa0.secret_writes(),
        });
    } else {
        log("hand-over skipped: one replica per shard");
    }

    // Phase 3: split brain on shard 1 (or 0 again if it has replicas left), `split_rounds` times; the
    // resumed old leader is the standby of the next round.
    let bs = if cfg.shards > 1 { 1 } else { 0 };
    let mut lb = if bs == hs { sa } else { Some(leader[bs]) };
    let mut sb = lb.and_then(|lb| {
        procs
            .iter()
            .enumerate()
            .position(|(i, p)| p.shard == bs && i != lb && !p.killed)
    });
    let sn = shard_name(bs);
    // The namespaces whose data changes (the first `split_namespaces` of the shard).
    let b_idx: Vec<usize> = (0..nsn)
        .filter(|i| shard_of_ns(*i, cfg.shards) == bs)
        .take(cfg.split_namespaces.max(1))
        .collect();
    let b_nss: Vec<String> = b_idx.iter().map(|i| ns_name(*i)).collect();
    let b_refs: Vec<usize> = (0..cfg.refs)
        .filter(|i| b_idx.contains(&(i % nsn)))
        .collect();
    let count = b_refs.len() as u64;
    let mut rounds: Vec<Value> = Vec::new();
    for round in 0..cfg.split_rounds {
        let (Some(old), Some(new)) = (lb, sb) else {
            log("split brain skipped: no shard with two live replicas");
            break;
        };
        let (v_old, v_new) = (format!("r{round}a"), format!("r{round}b"));
        // Work in flight: the data of those namespaces changes; the leader, which has read those
        // stores before, rewrites their Secrets; stop it part-way.
        let m_old0 = scrape(&procs[old]).await;
        for ns in &b_nss {
            k.merge_patch(
                "SecretStore",
                ns,
                objects::STORE,
                &rotate_patch(cfg.keys, &v_old, &format!("split-{round}-1")),
            )
            .await?;
        }
        let old_ref = &procs[old];
        let busy = m_old0.secret_writes() + (count / 10).max(1);
        until(
            Duration::from_secs(600),
            Duration::from_millis(10),
            "the leader to be busy rewriting",
            || async move { Ok(scrape(old_ref).await.secret_writes() >= busy) },
        )
        .await?;
        let m_old_pre = scrape(old_ref).await;
        procs[old].op.signal("STOP")?;
        let t_stop = Instant::now();
        let stopped_after = audit_writes(&procs[old].audit, 0)?.len() as u64;
        log(&format!(
            "round {round}: SIGSTOP {} (leader of shard {sn}) while rewriting {count} Secrets of {} namespace(s)",
            procs[old].identity,
            b_nss.len()
        ));
        let want = procs[new].identity.clone();
        let takeover = until(
            Duration::from_secs(120),
            Duration::from_millis(50),
            "the standby to take over",
            || {
                let (k, want) = (k.clone(), want.clone());
                async move { Ok(lease_holder(&k, bs).await.is_some_and(|(h, _)| h == want)) }
            },
        )
        .await?;
        let new_ref = &procs[new];
        let shard_count = per_shard[bs] as u64;
        until(
            Duration::from_secs(900),
            Duration::from_millis(100),
            "the new leader to verify its shard",
            || async move { Ok(scrape(new_ref).await.ready() >= shard_count) },
        )
        .await?;
        tokio::time::sleep(cfg.settle).await;
        let (seen2, stale2) = stale_secrets(&k, &b_nss, cfg.keys, &v_old).await?;
        log(&format!(
            "round {round}: {want} holds the lease {:.2}s after the stop; after its first pass {stale2} of {seen2} Secrets still lack the data the old leader was writing",
            takeover.as_secs_f64()
        ));
        // New data again, with force-sync on every SecretRef concerned (the store alone does not
        // reach a new leader, see above), written by the new leader while the old one is stopped.
        for ns in &b_nss {
            k.merge_patch(
                "SecretStore",
                ns,
                objects::STORE,
                &rotate_patch(cfg.keys, &v_new, &format!("split-{round}-2")),
            )
            .await?;
        }
        stamp_refs(&k, nsn, &b_refs, &format!("split-{round}-2")).await?;
        let mut last = scrape(new_ref).await.secret_writes();
        let mut quiet = 0u32;
        let t_w = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let m = scrape(new_ref).await;
            quiet = if m.secret_writes() == last {
                quiet + 1
            } else {
                0
            };
            last = m.secret_writes();
            if (quiet >= 3 && t_stop.elapsed() >= cfg.pause) || t_w.elapsed() > cfg.timeout {
                break;
            }
        }
        let (seen3, stale3) = stale_secrets(&k, &b_nss, cfg.keys, &v_new).await?;
        log(&format!(
            "round {round}: new leader done ({stale3} of {seen3} Secrets lack the newest data); old leader stopped for {:.1}s",
            t_stop.elapsed().as_secs_f64()
        ));
        // Resume the old leader; count what it writes from now on.
        let frozen = file_len(&procs[old].audit);
        let log_frozen = file_len(&procs[old].op.log);
        let c0 = k.counters().await?;
        let m_new0 = scrape(new_ref).await;
        // Every other live process's writes (the other shards go on working meanwhile).
        let others0 = others_writes(&procs, old).await;
        let paused = t_stop.elapsed();
        procs[old].op.signal("CONT")?;
        let old_log = procs[old].op.log.clone();
        let lost = until(
            Duration::from_secs(cfg.lease_duration * 4),
            Duration::from_millis(5),
            "the old leader to notice",
            || {
                let old_log = old_log.clone();
                async move {
                    let text = std::fs::read(&old_log).unwrap_or_default();
                    let tail = &text[(log_frozen as usize).min(text.len())..];
                    Ok(String::from_utf8_lossy(tail).contains("lost the leader lease"))
                }
            },
        )
        .await
        .ok();
        tokio::time::sleep(Duration::from_secs(cfg.lease_duration) + cfg.settle).await;
        let c1 = k.counters().await?;
        let others1 = others_writes(&procs, old).await;
        let m_new1 = scrape(new_ref).await;
        let m_old1 = scrape(&procs[old]).await;
        let after = audit_writes(&procs[old].audit, frozen)?;
        let emu_secret = counter_delta(&c0, &c1, "patch secrets")
            + counter_delta(&c0, &c1, "create secrets")
            + counter_delta(&c0, &c1, "delete secrets");
        let emu_status = counter_delta(&c0, &c1, "patch secretrefs/status");
        let at_api = (
            emu_secret.saturating_sub(others1.0 - others0.0),
            emu_status.saturating_sub(others1.1 - others0.1),
        );
        let repairs = (
            m_new1.secret_writes() - m_new0.secret_writes(),
            m_new1.status_writes() - m_new0.status_writes(),
        );
        let (seen_end, stale_end) = stale_secrets(&k, &b_nss, cfg.keys, &v_new).await?;
        let holder = lease_holder(&k, bs).await.map(|(h, _)| h);
        log(&format!(
            "round {round}: SIGCONT after {:.1}s: old leader noticed in {}; its audit shows {} Secret writes completed after SIGCONT \
             (metrics: {}); at the API after SIGCONT not from any other process: {} Secret, {} status writes; \
             new leader's repairs: {} Secret, {} status; {stale_end} of {seen_end} Secrets lack the newest data; lease: {holder:?}",
            paused.as_secs_f64(),
            lost.map_or("never".to_string(), |d| format!("{:.3}s", d.as_secs_f64())),
            after.len(),
            m_old1.secret_writes().saturating_sub(stopped_after),
            at_api.0,
            at_api.1,
            repairs.0,
            repairs.1,
        ));
        rounds.push(json!({
            "round": round, "shard": sn, "old_leader": procs[old].identity,
            "new_leader": procs[new].identity,
            "takeover_s": takeover.as_secs_f64(), "paused_s": paused.as_secs_f64(),
            "noticed_s": lost.map(|d| d.as_secs_f64()),
            "old_leader_writes_before_stop": stopped_after,
            "split_refs": count, "split_namespaces": b_nss.len(),
            "after_takeover_lacking_data_in_flight": stale2, "after_takeover_checked": seen2,
            "old_leader_audit_writes_after_cont": after.len(),
            "old_leader_late_targets": after.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(),
            "old_leader_metric_secret_writes_after_cont": m_old1.secret_writes().saturating_sub(stopped_after),
            "old_leader_provider_calls_since_stop_scrape": m_old1.provider_calls().saturating_sub(m_old_pre.provider_calls()),
            "emulator_secret_writes_after_cont": emu_secret, "emulator_status_writes_after_cont": emu_status,
            "old_leader_writes_at_api_after_cont": {"secret": at_api.0, "status": at_api.1},
            "new_leader_repairs_after_cont": {"secret": repairs.0, "status": repairs.1},
            "stale_at_end": stale_end, "secrets_checked": seen_end, "stale_before_cont": stale3,
            "lease_holder_at_end": holder,
        }));
        // The resumed old leader is the next round's standby.
        (lb, sb) = (Some(new), Some(old));
    }
    if !rounds.is_empty() {
        let col = |f: &dyn Fn(&Value) -> String| -> String {
            rounds.iter().map(f).collect::<Vec<_>>().join(", ")
        };
        let n = rounds.len();
        add(
            &format!(
                "split brain ({n} rounds on shard {sn}): leader SIGSTOPped mid-rewrite of {count} Secrets → standby holds the Lease"
            ),
            col(&|r| format!("{:.2}", r["takeover_s"].as_f64().unwrap_or(f64::NAN))) + " s",
            &format!("≤ {bar_handover} s"),
        );
        add(
            "split brain: the new leader's first pass leaves the old leader's rewrite unfinished (Secrets lacking its data)",
            col(&|r| {
                format!(
                    "{} of {}",
                    r["after_takeover_lacking_data_in_flight"], r["after_takeover_checked"]
                )
            }),
            "",
        );
        add(
            "split brain: old leader stopped for",
            col(&|r| format!("{:.1}", r["paused_s"].as_f64().unwrap_or(f64::NAN))) + " s",
            &format!("> lease {} s", cfg.lease_duration),
        );
        add(
            "split brain: SIGCONT → old leader logs \"lost the leader lease\"",
            col(&|r| {
                r["noticed_s"]
                    .as_f64()
                    .map_or("never".into(), |d| format!("{:.0}", d * 1000.0))
            }) + " ms",
            "",
        );
        add(
            "split brain: old leader's audit write records completed after SIGCONT (requests sent before the stop included)",
            col(&|r| r["old_leader_audit_writes_after_cont"].to_string()),
            "",
        );
        add(
            "split brain: old leader's writes reaching the API after SIGCONT (emulator counters minus every other process): Secret / status",
            col(&|r| {
                format!(
                    "{} / {}",
                    r["old_leader_writes_at_api_after_cont"]["secret"],
                    r["old_leader_writes_at_api_after_cont"]["status"]
                )
            }),
            "0 / 0",
        );
        add(
            "split brain: the new leader's repair writes after SIGCONT (Secret / status)",
            col(&|r| {
                format!(
                    "{} / {}",
                    r["new_leader_repairs_after_cont"]["secret"],
                    r["new_leader_repairs_after_cont"]["status"]
                )
            }),
            "0 / 0",
        );
        add(
            "split brain: Secrets lacking the newest data at the end",
            col(&|r| format!("{} of {}", r["stale_at_end"], r["secrets_checked"])),
            "0",
        );
    }
    let split = json!(rounds);

    // Standby costs, and the report.
    let mut table = String::from(
        "| process | shard | role (after the first sync) | SecretRefs in shard | RSS MiB | peak RSS MiB | CPU s (first sync) | provider calls | Secret writes | status writes | audit write records |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |\n",
            r["process"].as_str().unwrap_or("?"),
            r["shard"].as_str().unwrap_or("?"),
            r["role"].as_str().unwrap_or("?"),
            r["shard_refs"],
            r["rss_mib"].as_f64().unwrap_or(f64::NAN),
            r["peak_mib"].as_f64().unwrap_or(f64::NAN),
            r["cpu_s"].as_f64().unwrap_or(f64::NAN),
            r["provider_calls"],
            r["secret_writes"],
            r["status_writes"],
            r["audit_writes"],
        ));
    }
    table.push_str("\n| figure | value | bar |\n|---|---|---|\n");
    for (f, v, b) in &fig {
        table.push_str(&format!("| {f} | {v} | {b} |\n"));
    }
    for p in procs.iter_mut() {
        p.op.stop(Duration::from_secs(10));
    }
    drop(emu);
    Ok(Report {
        json: json!({
            "processes": rows,
            "figures": fig.iter().map(|(f, v, b)| json!({"figure": f, "value": v, "bar": b})).collect::<Vec<_>>(),
            "first_sync_s": first_sync.as_secs_f64(),
            "emulator_rss_mib": emu_rss,
            "seed_s": seed_s,
            "per_shard_refs": per_shard,
            "shard_synced_s": synced_at.iter().map(|t| t.map(|d| d.as_secs_f64())).collect::<Vec<_>>(),
            "double_writes": {"written_by_two_processes": written_by_two, "written_twice": written_twice,
                "foreign_shard_writes": foreign_writes, "audit_write_records": audit_total,
                "emulator_secret_writes": emu_secret_writes, "standby_writes": standby_writes,
                "standby_provider_calls": standby_calls},
            "handover": handover,
            "split_brain": split,
        }),
        markdown: table,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_follow_namespaces() {
        assert_eq!(shard_name(0), "a");
        assert_eq!(shard_name(3), "d");
        assert_eq!(shard_of_target("bench-7/sr-00007", 2), Some(1));
        assert_eq!(shard_of_target("bench-8/sr-00008", 4), Some(0));
        assert_eq!(shard_of_target("other/x", 2), None);
        let p = rotate_patch(3, "v2", "s");
        assert_eq!(
            p["spec"]["provider"]["fake"]["data"][2]["value"],
            "value-2-v2"
        );
    }

    #[test]
    fn reads_write_records_from_an_offset() {
        let dir = std::env::temp_dir().join(format!("shards-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.jsonl");
        let first = r#"{"action":"write","target":"bench-0/sr-00000"}"#;
        let body = format!(
            "{first}\n{}\n{}\n",
            r#"{"action":"read","remote_key":"k0"}"#,
            r#"{"action":"write","target":"bench-1/sr-00001","hmac":"h1"}"#
        );
        std::fs::write(&f, body).unwrap();
        assert_eq!(audit_writes(&f, 0).unwrap().len(), 2);
        let from = first.len() as u64 + 1;
        assert_eq!(
            audit_writes(&f, from).unwrap(),
            vec![("bench-1/sr-00001".to_string(), "h1".to_string())]
        );
        assert!(audit_writes(&dir.join("missing"), 0).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
