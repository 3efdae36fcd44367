//! The chart's alerting rules and Grafana dashboard refer only to metrics secretsync really exports.
//!
//! Exported names come from `secretsync::telemetry::Metrics` itself (every family exercised, then the
//! OpenMetrics text parsed), so renaming a metric in Rust, or misspelling one in
//! `charts/secretsync/files/prometheus-rules.yaml` or `charts/secretsync/files/dashboard.json`, fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use secretsync::telemetry::Metrics;

fn chart_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/secretsync")
        .join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(chart_file(rel))
        .unwrap_or_else(|e| panic!("reading charts/secretsync/{rel}: {e}"))
}

/// The sample names a PromQL query can select, by metric family: what `Metrics` exports once every
/// family has a sample. Counters are selected as `<family>_total`, histograms as `_bucket`/`_sum`/`_count`,
/// gauges by their family name.
fn exported() -> BTreeMap<String, String> {
    let m = Metrics::new();
    // Exercise every public recording method so that every family has at least one sample.
    drop(m.reconcile_timer());
    m.reconciled("success");
    m.reconciled("ProviderThrottled");
    m.provider_read("file", "success");
    m.secret_written();
    m.status_written();
    m.rotated();
    m.restarted("Deployment");
    m.throttled();
    m.set_audit_errors(1);
    m.set_secretref_state(
        "ns/a",
        None,
        Some(true),
        Some(chrono::Utc::now().timestamp() + 3600),
    );
    m.set_secretref_state("ns/b", None, Some(false), None);
    let text = m.encode();

    let mut families = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            families.insert(name.to_string(), kind.to_string());
        }
    }
    assert!(!families.is_empty(), "no # TYPE lines in:\n{text}");
    let mut allowed = BTreeMap::new();
    for (family, kind) in &families {
        let suffixes: &[&str] = match kind.as_str() {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "gauge" | "unknown" => &[""],
            other => panic!("metric {family}: unexpected type {other}"),
        };
        for s in suffixes {
            allowed.insert(format!("{family}{s}"), family.clone());
        }
    }
    // Cross-check the suffix rules against the samples really present, and that every family has one.
    let mut sampled = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = allowed
            .get(name)
            .unwrap_or_else(|| panic!("sample {name} does not match its family's type"));
        sampled.insert(family.clone());
    }
    for family in families.keys() {
        assert!(
            sampled.contains(family),
            "family {family} has no sample: exercise it in this test"
        );
    }
    allowed
}

/// The `secretsync_*` metric names a PromQL expression refers to. String literals (label values,
/// regexes) are removed first, so `job=~".*secretsync_x.*"` is not taken for a metric.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut code = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    code.push(' ');
                }
            }
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None => code.push(c),
        }
    }
    assert!(quote.is_none(), "unterminated string in {expr:?}");
    let mut names = BTreeSet::new();
    let mut ident = String::new();
    for c in code.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            ident.push(c);
        } else {
            if ident.starts_with("secretsync_") {
                names.insert(std::mem::take(&mut ident));
            }
            ident.clear();
        }
    }
    names
}

/// Problems with the metric names of `exprs` (source, expression): unknown names, and expressions
/// that refer to no secretsync metric at all.
fn unknown_names(exprs: &[(String, String)], allowed: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (source, expr) in exprs {
        let names = metric_names(expr);
        if names.is_empty() {
            problems.push(format!("{source}: refers to no secretsync_ metric: {expr}"));
        }
        for n in names {
            if !allowed.contains_key(&n) {
                problems.push(format!(
                    "{source}: {n} is not exported (exported: {:?})",
                    allowed.keys().collect::<Vec<_>>()
                ));
            }
        }
    }
    problems
}

fn rule_exprs() -> Vec<(String, String)> {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read("files/prometheus-rules.yaml")).expect("rules file is YAML");
    let mut out = Vec::new();
    let groups = doc["groups"].as_sequence().expect("groups");
    assert!(!groups.is_empty());
    for g in groups {
        for r in g["rules"].as_sequence().expect("rules") {
            let name = r["alert"]
                .as_str()
                .or(r["record"].as_str())
                .expect("alert or record name")
                .to_string();
            let expr = r["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: expr"))
                .to_string();
            out.push((format!("rule {name}"), expr));
        }
    }
    out
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read("files/dashboard.json")).expect("dashboard.json is valid JSON")
}

/// Every panel (rows' nested panels included).
fn panels(dash: &serde_json::Value) -> Vec<&serde_json::Value> {
    fn walk<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
        for p in v["panels"].as_array().into_iter().flatten() {
            if p["type"] != "row" {
                out.push(p);
            }
            walk(p, out);
        }
    }
    let mut out = Vec::new();
    walk(dash, &mut out);
    out
}

fn dashboard_exprs(dash: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        let title = p["title"].as_str().unwrap_or("?");
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
            out.push((format!("panel {title:?}"), expr.to_string()));
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"].get("query").unwrap_or(&v["query"]);
        out.push((
            format!("variable {}", v["name"]),
            q.as_str().expect("variable query").to_string(),
        ));
    }
    out
}

#[test]
fn metric_name_extraction() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(secretsync_reconcile_duration_seconds_bucket{job=~".*secretsync_nope.*"}[5m]))) and on() secretsync_secretrefs > 0"#,
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "secretsync_reconcile_duration_seconds_bucket".into(),
            "secretsync_secretrefs".into()
        ])
    );
    let allowed = exported();
    for good in [
        "secretsync_reconciles_total",
        "secretsync_reconcile_duration_seconds_bucket",
        "secretsync_reconcile_duration_seconds_sum",
        "secretsync_reconcile_duration_seconds_count",
        "secretsync_provider_reads_total",
        "secretsync_secret_writes_total",
        "secretsync_status_writes_total",
        "secretsync_rotations_total",
        "secretsync_restarts_total",
        "secretsync_secretrefs",
        "secretsync_nearest_expiry_seconds",
        "secretsync_audit_errors",
        "secretsync_provider_throttles_total",
    ] {
        assert!(
            allowed.contains_key(good),
            "{good} is documented in the README but not exported"
        );
    }
    // What a rename or a wrong suffix looks like: each of these is reported.
    for bad in [
        "rate(secretsync_reconcile_total[5m])",
        "secretsync_reconciles",
        "secretsync_reconcile_duration_seconds",
        "secretsync_secretrefs_total",
        "up{job=\"secretsync\"}",
    ] {
        let problems = unknown_names(&[("test".into(), bad.into())], &allowed);
        assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
    }
}

#[test]
fn alert_rules_use_only_exported_metrics() {
    let allowed = exported();
    let exprs = rule_exprs();
    let problems = unknown_names(&exprs, &allowed);
    assert!(
        problems.is_empty(),
        "charts/secretsync/files/prometheus-rules.yaml:\n{}",
        problems.join("\n")
    );
    // The alerts the chart promises.
    let names: BTreeSet<_> = exprs
        .iter()
        .map(|(s, _)| s.trim_start_matches("rule ").to_string())
        .collect();
    for a in [
        "SecretsyncSecretRefNotReady",
        "SecretsyncSecretExpiringSoon",
        "SecretsyncProviderThrottled",
        "SecretsyncAuditErrors",
        "SecretsyncNoSuccessfulReconcile",
        "SecretsyncDown",
    ] {
        assert!(names.contains(a), "alert {a} missing from the rules");
    }
    // Every alert has a severity, a summary and a description; `for` is a Prometheus duration.
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read("files/prometheus-rules.yaml")).unwrap();
    let dur = regex::Regex::new(r"^([0-9]+(ms|s|m|h|d|w|y))+$").unwrap();
    for r in doc["groups"][0]["rules"].as_sequence().unwrap() {
        let name = r["alert"].as_str().unwrap();
        assert!(
            r["labels"]["severity"].as_str().is_some(),
            "{name}: severity label"
        );
        for a in ["summary", "description"] {
            assert!(
                r["annotations"][a].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: annotation {a}"
            );
        }
        if let Some(f) = r.get("for") {
            assert!(
                dur.is_match(f.as_str().unwrap_or_default()),
                "{name}: for {f:?}"
            );
        }
    }
    // The template ships this very file.
    let tpl = read("templates/prometheusrule.yaml");
    assert!(
        tpl.contains(r#".Files.Get "files/prometheus-rules.yaml""#),
        "the PrometheusRule template must include the rules file"
    );
}

#[test]
fn dashboard_parses_and_uses_only_exported_metrics() {
    let allowed = exported();
    let dash = dashboard();
    let ps = panels(&dash);
    assert!(!ps.is_empty(), "the dashboard has panels");
    let mut ids = BTreeSet::new();
    for p in &ps {
        let title = p["title"].as_str().expect("every panel has a title");
        let targets = p["targets"].as_array().map(Vec::len).unwrap_or(0);
        assert!(targets > 0, "panel {title:?} has no target");
        assert!(
            ids.insert(p["id"].as_i64().expect("panel id")),
            "duplicate panel id in {title:?}"
        );
        assert!(
            p["gridPos"]["w"].as_i64().is_some() && p["gridPos"]["h"].as_i64().is_some(),
            "panel {title:?}: gridPos"
        );
    }
    let exprs = dashboard_exprs(&dash);
    let problems = unknown_names(&exprs, &allowed);
    assert!(
        problems.is_empty(),
        "charts/secretsync/files/dashboard.json:\n{}",
        problems.join("\n")
    );
    // Every metric family the README documents has a panel.
    let used: BTreeSet<String> = exprs
        .iter()
        .flat_map(|(_, e)| metric_names(e))
        .map(|n| allowed[&n].clone())
        .collect();
    let families: BTreeSet<String> = allowed.values().cloned().collect();
    for f in [
        "secretsync_reconciles",
        "secretsync_reconcile_duration_seconds",
        "secretsync_provider_reads",
        "secretsync_secret_writes",
        "secretsync_status_writes",
        "secretsync_rotations",
        "secretsync_restarts",
        "secretsync_secretrefs",
        "secretsync_nearest_expiry_seconds",
        "secretsync_audit_errors",
        "secretsync_provider_throttles",
    ] {
        assert!(families.contains(f), "{f} is no longer exported");
        assert!(used.contains(f), "no dashboard panel shows {f}");
    }
    assert_eq!(dash["uid"], "secretsync");
    let tpl = read("templates/grafana-dashboard.yaml");
    assert!(
        tpl.contains(r#".Files.Get "files/dashboard.json""#),
        "the dashboard ConfigMap must include dashboard.json"
    );
}
