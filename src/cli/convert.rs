//! `secretsync convert`: External Secrets Operator manifests → secretsync manifests
//! (docs/migrate-from-eso.md).
//!
//! ```text
//! secretsync convert -f PATH... [-n NS] [--out DIR] [--allow-partial] [--adopt] [--check [check options]]
//! ```
//!
//! Reads files, directories or `-` (stdin) like `check` ([`super::manifests::documents`]); converts
//! every `external-secrets.io` object with [`crate::convert`]; validates each result like `check`
//! does (schema, CEL rules, [`crate::api::validation`]); writes them to stdout as multi-document
//! YAML, or one file per object into `--out DIR`, each preceded by comments naming its source and
//! its warnings. Warnings and refusals also go to stderr (`warning:` / `error:` lines), then a
//! summary. Objects of other groups are ignored.
//!
//! Exit codes: 0 everything converted (or `--allow-partial`: the convertible objects were
//! written, the others listed on stderr as `skipped:`); 1 some object cannot be converted (nothing
//! is written), or `--check` found problems; 2 usage or input error.
//!
//! `--check` passes the converted objects straight to `secretsync check` ([`super::check::run_loaded`],
//! its report on stderr), with the same store options.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::check::{self, CheckArgs, CheckOutput};
use super::manifests::{self, CliError, OfflineArgs, Source, StoreArgs};
use crate::convert::{self, Converted, Options, Outcome};

/// `secretsync convert` options.
#[derive(clap::Args, Debug, Clone)]
pub struct ConvertArgs {
    /// An ESO manifest file or directory (recursive: *.yaml, *.yml, *.json), or `-` for stdin. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    /// Namespace of objects that do not set one.
    #[arg(short = 'n', long, value_name = "NS", default_value = "default")]
    pub namespace: String,
    /// Write one file per object into this directory instead of stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Write what converts and list the rest on stderr (exit 0) instead of failing.
    #[arg(long)]
    pub allow_partial: bool,
    /// Annotate every SecretRef with secretsync.io/adopt-from, so it takes over the Secret its
    /// ExternalSecret wrote (the switch-over).
    #[arg(long)]
    pub adopt: bool,
    /// Run the converted objects through `secretsync check` (report on stderr).
    #[arg(long)]
    pub check: bool,
    /// For --check: how stores are served offline (as for `secretsync check`).
    #[command(flatten)]
    pub stores: StoreArgs,
}

/// One refused object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The ESO object (`ExternalSecret/ns/name`).
    pub from: String,
    /// Where it came from.
    pub source: String,
    /// Field and reason.
    pub message: String,
}

/// What a conversion produced (pure; [`run`] prints it).
#[derive(Debug, Default)]
pub struct Report {
    /// Converted objects with the comment lines that go above each, in input order.
    pub objects: Vec<(Converted, Vec<String>)>,
    /// Objects that could not be converted.
    pub refused: Vec<Refusal>,
    /// Objects outside external-secrets.io.
    pub ignored: usize,
    /// ESO objects converted, by ESO kind.
    pub converted_by_kind: BTreeMap<String, usize>,
}

impl Report {
    /// The multi-document YAML of every converted object, with its comments.
    pub fn yaml(&self) -> String {
        self.objects
            .iter()
            .map(|(o, comments)| document(o, comments))
            .collect()
    }

    /// The file name of an object under `--out`.
    pub fn file_name(o: &Converted) -> String {
        let kind = o.kind.to_ascii_lowercase();
        match &o.namespace {
            Some(ns) => format!("{kind}-{ns}-{}.yaml", o.name),
            None => format!("{kind}-{}.yaml", o.name),
        }
    }

    /// The stderr lines: warnings, refusals (`error:`, or `skipped:` when partial), a summary.
    pub fn stderr(&self, partial: bool) -> String {
        let mut s = String::new();
        for (o, _) in &self.objects {
            for w in &o.warnings {
                s.push_str(&format!("warning: {}: {w}\n", o.id()));
            }
        }
        let tag = if partial { "skipped" } else { "error" };
        for r in &self.refused {
            s.push_str(&format!(
                "{tag}: {} ({}): {}\n",
                r.from, r.source, r.message
            ));
        }
        let kinds: Vec<String> = self
            .converted_by_kind
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        s.push_str(&format!(
            "converted {} ESO object(s){} into {} secretsync object(s); {} refused; {} other object(s) ignored\n",
            self.converted_by_kind.values().sum::<usize>(),
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            },
            self.objects.len(),
            self.refused.len(),
            self.ignored
        ));
        s
    }
}

fn document(o: &Converted, comments: &[String]) -> String {
    let mut s = String::from("---\n");
    for c in comments {
        s.push_str(&format!("# {c}\n"));
    }
    s.push_str(&serde_yaml_ng::to_string(&o.object).unwrap_or_default());
    s
}

fn source_str(s: &Source) -> String {
    format!("{}, document {}", s.path.display(), s.document)
}

/// Converts the documents and validates each result like `check` (pure but for nothing: no IO).
pub fn convert_documents(docs: &[(Source, serde_yaml_ng::Value)], opts: &Options) -> Report {
    let mut r = Report::default();
    for (source, value) in docs {
        let json = match serde_json::to_value(value) {
            Ok(j) => j,
            Err(_) => {
                r.refused.push(Refusal {
                    from: "(object)".into(),
                    source: source_str(source),
                    message: "not representable as JSON (non-string map keys?)".into(),
                });
                continue;
            }
        };
        let kind = json
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("")
            .to_string();
        match convert::convert(&json, opts) {
            Outcome::Ignored => r.ignored += 1,
            Outcome::Refused { from, error } => r.refused.push(Refusal {
                from,
                source: source_str(source),
                message: error.to_string(),
            }),
            Outcome::Converted { from, objects } => {
                // The output must pass the validation `check` and the API server apply.
                let mut problems = Vec::new();
                for o in &objects {
                    problems.extend(validate(o, &opts.default_namespace));
                }
                if let Some(p) = problems.first() {
                    r.refused.push(Refusal {
                        from,
                        source: source_str(source),
                        message: format!("the converted object is not valid: {p}"),
                    });
                    continue;
                }
                *r.converted_by_kind.entry(kind).or_default() += 1;
                for o in objects {
                    let mut comments = vec![format!(
                        "converted by secretsync from {from} ({})",
                        source_str(source)
                    )];
                    comments.extend(o.warnings.iter().map(|w| format!("warning: {w}")));
                    r.objects.push((o, comments));
                }
            }
        }
    }
    r
}

/// The validation problems of one converted object (the `check` loader's own validation).
fn validate(o: &Converted, ns: &str) -> Vec<String> {
    let text = serde_yaml_ng::to_string(&o.object).unwrap_or_default();
    match manifests::load_str(Path::new("converted"), &text, ns) {
        Err(e) => vec![e.to_string()],
        Ok(m) => m
            .secret_refs
            .iter()
            .flat_map(|x| x.problems.iter())
            .chain(m.stores.iter().flat_map(|x| x.problems.iter()))
            .chain(m.cluster_stores.iter().flat_map(|x| x.problems.iter()))
            .map(|p| p.to_string())
            .collect(),
    }
}

/// Runs `convert`: the YAML to `out` (or files), warnings, refusals and the summary to `err`.
/// `Ok(true)`: exit 0; `Ok(false)`: exit 1.
pub async fn run(
    args: &ConvertArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<bool, CliError> {
    let docs = manifests::documents(&args.files)?;
    let opts = Options {
        default_namespace: args.namespace.clone(),
        adopt: args.adopt,
    };
    let report = convert_documents(&docs, &opts);
    write!(err, "{}", report.stderr(args.allow_partial))?;
    if !report.refused.is_empty() && !args.allow_partial {
        return Ok(false);
    }
    let yaml = report.yaml();
    match &args.out {
        None => write!(out, "{yaml}")?,
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| CliError::Read {
                path: dir.clone(),
                source,
            })?;
            for (o, comments) in &report.objects {
                let path = dir.join(Report::file_name(o));
                std::fs::write(&path, document(o, comments))
                    .map_err(|source| CliError::Read { path, source })?;
            }
        }
    }
    if !args.check {
        return Ok(true);
    }
    let loaded = manifests::load_str(Path::new("converted"), &yaml, &args.namespace)?;
    let check_args = CheckArgs {
        offline: OfflineArgs {
            files: Vec::new(),
            namespace: args.namespace.clone(),
            stores: args.stores.clone(),
        },
        output: CheckOutput::Text,
    };
    check::run_loaded(&loaded, &check_args, err).await
}
