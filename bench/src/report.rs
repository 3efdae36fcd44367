//! The figures, their bars, and the Markdown/JSON report.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::stats::{self, Summary, Worse};

/// One figure of the table.
pub struct Figure {
    /// Stable id (JSON key).
    pub id: &'static str,
    /// The DESIGN §6 bar it belongs to (`G1`, ..., `base`).
    pub group: &'static str,
    /// What is measured.
    pub what: &'static str,
    /// Unit.
    pub unit: &'static str,
    /// The bar, as text (empty: informational).
    pub bar: &'static str,
    /// The bar as a limit on the worst run (`None`: informational).
    pub limit: Option<f64>,
    /// Direction.
    pub worse: Worse,
    /// Decimals shown.
    pub decimals: usize,
}

const fn fig(
    id: &'static str,
    group: &'static str,
    what: &'static str,
    unit: &'static str,
    bar: &'static str,
    limit: Option<f64>,
    decimals: usize,
) -> Figure {
    Figure {
        id,
        group,
        what,
        unit,
        bar,
        limit,
        worse: Worse::Higher,
        decimals,
    }
}

/// Every figure, in table order.
pub const FIGURES: &[Figure] = &[
    fig(
        "base_bulk_s",
        "base",
        "minimal client writes {refs} Secrets directly (16 in flight)",
        "s",
        "",
        None,
        2,
    ),
    fig(
        "base_lat_p50_ms",
        "base",
        "direct Secret create → visible to a watcher, p50 ({creates} at {rate}/s)",
        "ms",
        "",
        None,
        1,
    ),
    fig(
        "base_lat_p99_ms",
        "base",
        "direct Secret create → visible to a watcher, p99",
        "ms",
        "",
        None,
        1,
    ),
    fig(
        "first_sync_s",
        "info",
        "first sync of {refs} new SecretRefs (operator started on them)",
        "s",
        "",
        None,
        2,
    ),
    fig(
        "first_sync_ratio",
        "info",
        "first sync ÷ the baseline's direct writes of the same Secrets",
        "×",
        "",
        None,
        2,
    ),
    fig(
        "g1_peak_mib",
        "G1",
        "peak RSS (VmHWM), first sync and steady state",
        "MiB",
        "≤ 80",
        Some(80.0),
        1,
    ),
    fig(
        "g1_steady_mib",
        "G1",
        "steady RSS ({refs} refs + {refs} managed + {unrelated} unrelated 128 KiB Secrets)",
        "MiB",
        "≤ 48",
        Some(48.0),
        1,
    ),
    fig(
        "cache_bytes_per_ref",
        "G1",
        "compressed SecretRef cache, bytes per SecretRef (steady)",
        "B",
        "",
        None,
        0,
    ),
    fig(
        "timers",
        "G1",
        "refresh timers held (steady, replaced ones included)",
        "timers",
        "",
        None,
        0,
    ),
    fig(
        "g1_growth_mib",
        "G1",
        "RSS growth after adding {more} more unrelated 128 KiB Secrets",
        "MiB",
        "≤ 2 (§2.8)",
        Some(2.0),
        1,
    ),
    fig(
        "g2_s",
        "G2",
        "cold start: restart → all {refs} Ready and verified",
        "s",
        "≤ 15",
        Some(15.0),
        2,
    ),
    fig(
        "g2_ratio",
        "G2",
        "cold start ÷ baseline bulk write of the same Secrets",
        "×",
        "",
        None,
        2,
    ),
    fig(
        "g2_writes",
        "G2",
        "Kubernetes writes during the cold start",
        "writes",
        "≤ 100",
        Some(100.0),
        0,
    ),
    fig(
        "g2_provider_calls",
        "G2",
        "provider calls during the cold start (refreshes whose slot falls in it)",
        "calls",
        "no storm (≤ 100)",
        Some(100.0),
        0,
    ),
    fig(
        "g2_peak_mib",
        "G2",
        "peak RSS of the restarted operator",
        "MiB",
        "≤ 80",
        Some(80.0),
        1,
    ),
    fig(
        "g3_p50_ms",
        "G3",
        "create → synced Secret visible, p50 ({creates} at {rate}/s, {refs} steady)",
        "ms",
        "≤ 150",
        Some(150.0),
        1,
    ),
    fig(
        "g3_p99_ms",
        "G3",
        "create → synced Secret visible, p99",
        "ms",
        "≤ 1000",
        Some(1000.0),
        1,
    ),
    fig(
        "g3_max_ms",
        "G3",
        "create → synced Secret visible, max",
        "ms",
        "",
        None,
        1,
    ),
    fig(
        "g3_p50_ratio",
        "G3",
        "p50 ÷ baseline direct-write p50",
        "×",
        "",
        None,
        2,
    ),
    fig(
        "g3_p99_ratio",
        "G3",
        "p99 ÷ baseline direct-write p99",
        "×",
        "",
        None,
        2,
    ),
    fig(
        "g3due_p50_ms",
        "G3",
        "same, while all {refs} are due at once: p50",
        "ms",
        "≤ 150",
        Some(150.0),
        1,
    ),
    fig(
        "g3due_p99_ms",
        "G3",
        "same, while all {refs} are due at once: p99",
        "ms",
        "≤ 1000",
        Some(1000.0),
        1,
    ),
    fig(
        "g3due_max_ms",
        "G3",
        "same, while all {refs} are due at once: max",
        "ms",
        "",
        None,
        1,
    ),
    fig(
        "g3due_bulk_s",
        "G3",
        "all {refs} due at once (store force-sync), no creates: time until all refreshed",
        "s",
        "",
        None,
        2,
    ),
    fig(
        "g4_calls_per_cycle",
        "G4",
        "AWS calls per refresh cycle ({aws_refs} refs on {aws_keys} keys, moto)",
        "calls",
        "",
        None,
        1,
    ),
    fig(
        "g4_calls_per_day",
        "G4",
        "AWS calls per day at a 1 h refresh (= per cycle × 24)",
        "calls/day",
        "≤ 2600",
        Some(2600.0),
        0,
    ),
    fig(
        "g4_first_sync_calls",
        "G4",
        "AWS calls for the first sync of all {aws_refs}",
        "calls",
        "",
        None,
        0,
    ),
    fig(
        "attack_growth_mib",
        "§2.8",
        "peak RSS growth under an oversized-answer attack (12 × 6 MB values behind one SecretRef, 30 s)",
        "MiB",
        "≤ 32",
        Some(32.0),
        1,
    ),
    fig(
        "attack_peak_mib",
        "§2.8",
        "peak RSS after the attack",
        "MiB",
        "",
        None,
        1,
    ),
    fig(
        "g7_writes_per_refresh",
        "G7",
        "Kubernetes writes per SecretRef per refresh, unchanged data",
        "writes",
        "≤ 0.01",
        Some(0.01),
        4,
    ),
    fig(
        "g7_refreshes",
        "G7",
        "periodic refreshes in the measured window",
        "refreshes",
        "",
        None,
        0,
    ),
    fig(
        "g8_idle_mcores",
        "G8",
        "CPU, {refs} refs steady at 1 h refresh",
        "millicores",
        "≤ 5",
        Some(5.0),
        2,
    ),
    fig(
        "g8_noop_ms",
        "G8",
        "CPU per no-op periodic refresh",
        "ms",
        "",
        None,
        3,
    ),
    fig(
        "g8_create_ms",
        "G8",
        "CPU per created SecretRef (all its writing reconciles)",
        "ms",
        "",
        None,
        3,
    ),
];

/// Bars of the large tier (issue 23: 100,000 SecretRefs on one replica), replacing the DESIGN §6
/// bars of the same figures above [`LARGE_TIER`] SecretRefs: `(id, bar, limit)`.
pub const LARGE_BARS: &[(&str, &str, f64)] = &[
    ("first_sync_ratio", "≤ 3", 3.0),
    ("g1_peak_mib", "≤ 200", 200.0),
    ("g1_steady_mib", "≤ 128", 128.0),
    ("g2_s", "≤ 10", 10.0),
    ("g2_writes", "0", 0.0),
    ("g2_peak_mib", "≤ 200", 200.0),
    ("g3_p99_ms", "≤ 50", 50.0),
    ("g8_idle_mcores", "≤ 20", 20.0),
    ("g4_calls_per_day", "≤ 25000", 25_000.0),
];

/// Above this many SecretRefs the table uses [`LARGE_BARS`].
pub const LARGE_TIER: usize = 10_000;

/// The bar and limit of `fig` at `refs` SecretRefs.
pub fn bar_of(fig: &Figure, refs: usize) -> (&'static str, Option<f64>) {
    if refs > LARGE_TIER
        && let Some((_, bar, limit)) = LARGE_BARS.iter().find(|(id, _, _)| *id == fig.id)
    {
        return (bar, Some(*limit));
    }
    (fig.bar, fig.limit)
}

/// Runs' raw figures, by id.
pub type RunFigures = BTreeMap<String, f64>;

/// Placeholders in the texts.
pub struct Scale {
    /// `{refs}` etc.
    pub vars: Vec<(&'static str, String)>,
}

impl Scale {
    fn fill(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (k, v) in &self.vars {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        out
    }
}

fn fmt(v: f64, decimals: usize) -> String {
    if v.is_infinite() {
        return "timeout".into();
    }
    format!("{v:.decimals$}")
}

/// One summarised row.
pub struct Row<'a> {
    /// The figure.
    pub fig: &'a Figure,
    /// Its bar at this scale, as text.
    pub bar: &'static str,
    /// Its limit at this scale.
    pub limit: Option<f64>,
    /// Its summary over runs.
    pub summary: Option<Summary>,
}

impl Row<'_> {
    /// Met / not met / informational.
    pub fn verdict(&self) -> &'static str {
        match (self.limit, &self.summary) {
            (None, _) => "",
            (Some(_), None) => "not run",
            (Some(l), Some(s)) => {
                if s.worst <= l + 1e-9 {
                    "met"
                } else if s.median <= l + 1e-9 {
                    "median met"
                } else {
                    "NOT MET"
                }
            }
        }
    }
}

/// Summarises every figure over the runs.
pub fn rows(runs: &[RunFigures], refs: usize) -> Vec<Row<'static>> {
    FIGURES
        .iter()
        .map(|f| {
            let samples: Vec<f64> = runs.iter().filter_map(|r| r.get(f.id).copied()).collect();
            let (bar, limit) = bar_of(f, refs);
            Row {
                fig: f,
                bar,
                limit,
                summary: stats::summarize(&samples, f.worse),
            }
        })
        .collect()
}

/// The Markdown table.
pub fn markdown(rows: &[Row], scale: &Scale) -> String {
    let mut out = String::from(
        "| # | figure | unit | median | worst | runs | bar | |\n|---|---|---|---:|---:|---:|---|---|\n",
    );
    for r in rows {
        let (m, w, n) = match &r.summary {
            Some(s) => (
                fmt(s.median, r.fig.decimals),
                fmt(s.worst, r.fig.decimals),
                s.n.to_string(),
            ),
            None => ("–".into(), "–".into(), "0".into()),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {m} | {w} | {n} | {} | {} |\n",
            r.fig.group,
            scale.fill(r.fig.what),
            r.fig.unit,
            r.bar,
            r.verdict()
        ));
    }
    out
}

/// The JSON report.
pub fn json_report(
    rows: &[Row],
    runs: &[RunFigures],
    scale: &Scale,
    machine: Value,
    config: Value,
) -> Value {
    let figures: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.fig.id,
                "group": r.fig.group,
                "what": scale.fill(r.fig.what),
                "unit": r.fig.unit,
                "bar": r.bar,
                "median": r.summary.as_ref().map(|s| s.median).filter(|v| v.is_finite()),
                "worst": r.summary.as_ref().map(|s| s.worst).filter(|v| v.is_finite()),
                "runs": r.summary.as_ref().map_or(0, |s| s.n),
                "verdict": r.verdict(),
            })
        })
        .collect();
    json!({"machine": machine, "config": config, "figures": figures, "runs": runs})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_use_the_worst_run() {
        let f = &FIGURES.iter().find(|f| f.id == "g2_s").unwrap();
        let row = |v: &[f64]| Row {
            fig: f,
            bar: f.bar,
            limit: f.limit,
            summary: stats::summarize(v, Worse::Higher),
        };
        assert_eq!(row(&[3.0, 4.0, 5.0]).verdict(), "met");
        assert_eq!(row(&[3.0, 4.0, 25.0]).verdict(), "median met");
        assert_eq!(row(&[30.0, 40.0, 25.0]).verdict(), "NOT MET");
        let ids: std::collections::HashSet<_> = FIGURES.iter().map(|f| f.id).collect();
        assert_eq!(ids.len(), FIGURES.len(), "figure ids are unique");
        for (id, _, _) in LARGE_BARS {
            assert!(
                ids.contains(id),
                "large-tier bar for an unknown figure {id}"
            );
        }
        assert_eq!(bar_of(f, 10_000).1, Some(15.0));
        assert_eq!(bar_of(f, 100_000).1, Some(10.0));
    }
}
