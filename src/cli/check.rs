//! `secretsync check`: validate manifests and confirm every referenced remote key resolves, without
//! printing values (DESIGN §3, for CI gates).
//!
//! ```text
//! secretsync check -f PATH... [--output text|json] [-n NS] [--master-key-file KEY]
//!                  [--file-store NAME=PATH]... [--store-override NAME=env]... [--namespace-labels NS=K=V]...
//!                  [--controller-namespace NS]
//! ```
//!
//! Every SecretRef goes through the controller's steps — validation, store resolution under the
//! tenancy and ambient-credential rules ([`crate::stores`], the controller's own code), provider reads (`data`, `dataFrom.extract`, `dataFrom.find`; a find matching
//! nothing is a problem), and [`crate::controller::desired::build`] — so missing keys and
//! properties, template errors, empty values and oversize Secrets are caught exactly as the
//! controller would report them. Every store manifest is validated too. Problems carry the
//! controller's stable reasons (`RemoteKeyNotFound`, `StoreNotFound`, `KeyNotAllowed`, ...;
//! `InvalidSpec` for validation) and the field at fault.
//!
//! Exit codes: 0 everything resolves; 1 some SecretRef or store has a problem; 2 usage or input
//! error (unreadable file, malformed YAML, no SecretRef found).
//!
//! Text output, one line per problem (stdout):
//!
//! ```text
//! SecretRef/demo/db: OK (Secret "db-credentials", 3 key(s), SecretStore "team-files")
//! SecretRef/demo/api: spec.data[0].remoteRef.key: remote key "/demo/api" not found [RemoteKeyNotFound]
//! FAIL: 1 of 2 SecretRef(s) have problems, 0 invalid store(s), 1 other object(s) ignored
//! ```
//!
//! `--output json` prints one document:
//! `{"ok", "secretRefs": [{"namespace", "name", "store", "storeKind", "ok", "keys", "problems":
//! [{"reason", "field", "message"}]}], "stores": [{"kind", "namespace", "name", "ok", "problems"}],
//! "ignoredObjects"}` (`keys`: how many keys the Secret would hold; `namespace` is null for
//! ClusterSecretStores).

use std::io::Write;

use serde::Serialize;

use super::evaluate::{Evaluated, evaluate};
use super::manifests::{self, CliError, Manifest, Manifests, OfflineArgs, Problem};
use super::offline::Offline;
use crate::api::StoreKind;
use crate::audit::HmacKey;

/// Output format of `check`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CheckOutput {
    /// One line per SecretRef or problem, and a summary.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

/// `secretsync check` options.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// Manifests and stores.
    #[command(flatten)]
    pub offline: OfflineArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: CheckOutput,
}

/// The JSON report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Every SecretRef resolves and every store is valid.
    pub ok: bool,
    /// Per SecretRef, sorted by namespace and name.
    pub secret_refs: Vec<SecretRefReport>,
    /// Per store manifest.
    pub stores: Vec<StoreReport>,
    /// ClusterSecretRefs recognised (validated, not expanded over namespaces).
    pub cluster_secret_refs: usize,
    /// Objects of other kinds that were ignored.
    pub ignored_objects: usize,
}

/// One SecretRef in the report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRefReport {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.storeRef.name`.
    pub store: String,
    /// `SecretStore` or `ClusterSecretStore`.
    pub store_kind: &'static str,
    /// No problems.
    pub ok: bool,
    /// How many keys the Secret would hold (0 when there are problems).
    pub keys: usize,
    /// What is wrong.
    pub problems: Vec<Problem>,
}

/// One store manifest in the report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreReport {
    /// `SecretStore` or `ClusterSecretStore`.
    pub kind: &'static str,
    /// Namespace (null for ClusterSecretStores).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Valid.
    pub ok: bool,
    /// What is wrong.
    pub problems: Vec<Problem>,
}

fn kind_str(k: StoreKind) -> &'static str {
    match k {
        StoreKind::SecretStore => "SecretStore",
        StoreKind::ClusterSecretStore => "ClusterSecretStore",
    }
}

fn store_report<T>(kind: &'static str, m: &Manifest<T>) -> StoreReport {
    StoreReport {
        kind,
        namespace: m.namespace.clone(),
        name: m.name.clone(),
        ok: m.problems.is_empty(),
        problems: m.problems.clone(),
    }
}

/// Builds the report from evaluated SecretRefs and the loaded stores.
pub fn report(manifests: &Manifests, evaluated: &[Evaluated]) -> Report {
    let secret_refs: Vec<SecretRefReport> = evaluated
        .iter()
        .map(|e| SecretRefReport {
            namespace: e.namespace.clone(),
            name: e.name.clone(),
            store: e.store.clone(),
            store_kind: kind_str(e.store_kind),
            ok: e.problems.is_empty(),
            keys: e.desired.as_ref().map_or(0, |d| d.data.len()),
            problems: e.problems.clone(),
        })
        .collect();
    let stores: Vec<StoreReport> = manifests
        .stores
        .iter()
        .map(|m| store_report("SecretStore", m))
        .chain(
            manifests
                .cluster_stores
                .iter()
                .map(|m| store_report("ClusterSecretStore", m)),
        )
        .collect();
    Report {
        ok: secret_refs.iter().all(|s| s.ok) && stores.iter().all(|s| s.ok),
        secret_refs,
        stores,
        cluster_secret_refs: manifests.cluster_secret_refs,
        ignored_objects: manifests.ignored,
    }
}

/// Writes the text form of a report.
pub fn write_text(
    out: &mut dyn Write,
    report: &Report,
    evaluated: &[Evaluated],
) -> std::io::Result<()> {
    for (s, e) in report.secret_refs.iter().zip(evaluated) {
        let id = format!("SecretRef/{}/{}", s.namespace, s.name);
        if s.ok {
            let target = e.desired.as_ref().map(|d| d.name.as_str()).unwrap_or("");
            writeln!(
                out,
                "{id}: OK (Secret {target:?}, {} key(s), {} {:?})",
                s.keys, s.store_kind, s.store
            )?;
        }
        for p in &s.problems {
            writeln!(out, "{id}: {p}")?;
        }
    }
    for s in &report.stores {
        let id = match &s.namespace {
            Some(ns) => format!("{}/{ns}/{}", s.kind, s.name),
            None => format!("{}/{}", s.kind, s.name),
        };
        for p in &s.problems {
            writeln!(out, "{id}: {p}")?;
        }
    }
    let failing = report.secret_refs.iter().filter(|s| !s.ok).count();
    let bad_stores = report.stores.iter().filter(|s| !s.ok).count();
    if report.cluster_secret_refs > 0 {
        writeln!(
            out,
            "note: {} ClusterSecretRef(s) recognised (validated; their SecretRefs are not expanded)",
            report.cluster_secret_refs
        )?;
    }
    if report.ok {
        writeln!(
            out,
            "OK: {} SecretRef(s) resolve, {} other object(s) ignored",
            report.secret_refs.len(),
            report.ignored_objects
        )
    } else {
        writeln!(
            out,
            "FAIL: {failing} of {} SecretRef(s) have problems, {bad_stores} invalid store(s), {} other object(s) ignored",
            report.secret_refs.len(),
            report.ignored_objects
        )
    }
}

/// Runs `check`, writing the report to `out`. `Ok(true)`: everything resolves (exit 0);
/// `Ok(false)`: problems (exit 1); `Err`: input error (exit 2).
pub async fn run(args: &CheckArgs, out: &mut dyn Write) -> Result<bool, CliError> {
    let manifests = manifests::load_args(&args.offline)?;
    run_loaded(&manifests, args, out).await
}

/// Runs `check` over manifests already loaded (`secretsync convert --check` passes the converted
/// objects); `args.offline.files` is not read again. Same results and output as [`run`].
pub async fn run_loaded(
    manifests: &Manifests,
    args: &CheckArgs,
    out: &mut dyn Write,
) -> Result<bool, CliError> {
    let offline = Offline::new(manifests, &args.offline)?;
    // Check never prints HMACs; any key gives the same verdicts.
    let evaluated = evaluate(manifests, &offline, &HmacKey::random()).await;
    let report = report(manifests, &evaluated);
    match args.output {
        CheckOutput::Text => write_text(out, &report, &evaluated)?,
        CheckOutput::Json => {
            serde_json::to_writer_pretty(&mut *out, &report).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    }
    Ok(report.ok)
}
