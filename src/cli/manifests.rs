//! Shared by `secretsync check` and `secretsync render`: loading manifests and validating them.
//!
//! # Loading
//!
//! `-f PATH` (repeatable) names files or directories; directories are walked recursively in name
//! order for `*.yaml`, `*.yml` and `*.json`. Files hold one or more YAML documents (JSON is YAML);
//! a `kind: List` is expanded. `secretsync.io/v1alpha1` SecretRefs, SecretStores and
//! ClusterSecretStores are kept; other kinds are counted as ignored (`Namespace` objects also
//! supply namespace labels, `ConfigMap`s the documents of file stores). An object without a namespace gets `--namespace` (default `default`),
//! like `kubectl apply`. Unreadable files, malformed YAML, objects without `apiVersion`/`kind`/
//! `metadata.name`, unknown secretsync kinds or versions, and the same object twice are input
//! errors (exit code 2).
//!
//! # Validation
//!
//! Every kept object is checked like the API server and the controller would: its fields must
//! deserialize (and unknown fields are reported, as `kubectl apply`'s strict validation would), the
//! CEL rules of the CRDs (`validate_cel`) and [`crate::api::validation`] must pass. Problems have
//! the reason `InvalidSpec` and name the field.
//!
//! Stores are resolved and SecretRefs judged by [`super::offline`] and [`super::evaluate`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

use crate::api::{
    ClusterSecretRef, ClusterSecretStore, Reason, SecretRef, SecretStore, validation,
};
use crate::cli::store::MasterKeyArgs;
use crate::stores::StoreError;

/// Exit code: every SecretRef resolves.
pub const EXIT_OK: u8 = 0;
/// Exit code: some SecretRef (or store) has a problem.
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit code: usage or input error (unreadable file, malformed YAML, no SecretRefs).
pub const EXIT_INPUT: u8 = 2;

/// Errors of the offline commands that stop them before any SecretRef is judged (exit code 2).
/// Messages name files and objects, never values.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A document is not valid YAML.
    #[error("{}: document {document}{}: malformed YAML: {message}", path.display(), line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// 1-based index of the document in the file.
        document: usize,
        /// 1-based line in the file, if known.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// The manifests cannot be used as a whole (missing fields, duplicates, no SecretRefs).
    #[error("{0}")]
    Input(String),
    /// A command-line option is malformed.
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// Maps a command's outcome to its exit code, printing an input error to stderr.
pub fn exit_code(result: Result<bool, CliError>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::from(EXIT_OK),
        Ok(false) => ExitCode::from(EXIT_PROBLEMS),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INPUT)
        }
    }
}

/// Options shared by `check` and `render`.
#[derive(clap::Args, Debug, Clone)]
pub struct OfflineArgs {
    /// A manifest file or directory (recursive: *.yaml, *.yml, *.json). Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    /// Namespace of objects that do not set one (like kubectl's default namespace).
    #[arg(short = 'n', long, value_name = "NS", default_value = "default")]
    pub namespace: String,
    /// How stores are served offline.
    #[command(flatten)]
    pub stores: StoreArgs,
}

/// How `check`, `render` and `convert --check` serve stores offline.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// The master key of file stores.
    #[command(flatten)]
    pub master_key: MasterKeyArgs,
    /// Read file store NAME's document from PATH (required for stores backed by a ConfigMap). Repeatable.
    #[arg(long = "file-store", value_name = "NAME=PATH")]
    pub file_stores: Vec<String>,
    /// Serve store NAME from SECRETSYNC_* environment variables (`NAME=env`). Repeatable.
    #[arg(long = "store-override", value_name = "NAME=env")]
    pub store_overrides: Vec<String>,
    /// A label of a namespace, for ClusterSecretStore namespaceSelectors. Repeatable.
    #[arg(long = "namespace-labels", value_name = "NS=KEY=VALUE")]
    pub namespace_labels: Vec<String>,
    /// The namespace the controller runs in: only its SecretStores (and ClusterSecretStores) may use
    /// the controller's own identity or files, as in the cluster.
    #[arg(long, value_name = "NS", default_value = "secretsync-system")]
    pub controller_namespace: String,
}

impl Default for StoreArgs {
    /// No store options, the controller in `secretsync-system` (the command line's defaults).
    fn default() -> Self {
        StoreArgs {
            master_key: MasterKeyArgs::default(),
            file_stores: Vec::new(),
            store_overrides: Vec::new(),
            namespace_labels: Vec::new(),
            controller_namespace: "secretsync-system".into(),
        }
    }
}

/// One problem found with an object: a stable reason, the field at fault, and a message without values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Stable category (the controller's condition reasons; `InvalidSpec` for validation).
    pub reason: Reason,
    /// The field at fault (`spec.data[0].remoteRef.key`), or `metadata` / `spec`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(
        reason: Reason,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            reason,
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn from_store(e: &StoreError) -> Self {
        Self::new(e.reason(), "spec.storeRef", e.to_string())
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} [{}]", self.field, self.message, self.reason)
    }
}

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// 1-based document index in the file.
    pub document: usize,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (document {})", self.path.display(), self.document)
    }
}

/// One loaded object: its identity, the typed object if it deserialized, and its validation problems.
#[derive(Debug, Clone)]
pub struct Manifest<T> {
    /// Where it came from.
    pub source: Source,
    /// Its namespace (`None` for cluster-scoped kinds).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// The object, if it deserialized.
    pub object: Option<T>,
    /// Validation problems (empty: valid).
    pub problems: Vec<Problem>,
}

impl<T> Manifest<T> {
    /// `Kind/namespace/name` (or `Kind/name`), as used in reports.
    pub fn id(&self, kind: &str) -> String {
        match &self.namespace {
            Some(ns) => format!("{kind}/{ns}/{}", self.name),
            None => format!("{kind}/{}", self.name),
        }
    }
}

/// Everything loaded from the manifests.
#[derive(Debug, Default)]
pub struct Manifests {
    /// SecretRefs, sorted by namespace and name.
    pub secret_refs: Vec<Manifest<SecretRef>>,
    /// SecretStores, sorted by namespace and name.
    pub stores: Vec<Manifest<SecretStore>>,
    /// ClusterSecretStores, sorted by name.
    pub cluster_stores: Vec<Manifest<ClusterSecretStore>>,
    /// `data` and `binaryData` of ConfigMaps, by namespace and name (file stores' documents).
    pub config_maps: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
    /// Labels of `Namespace` objects found in the manifests.
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// How many ClusterSecretRefs were found (validated; not expanded over namespaces).
    pub cluster_secret_refs: usize,
    /// How many objects of other kinds were ignored.
    pub ignored: usize,
}

/// Lists the manifest files under `paths` (directories recursively, in name order).
fn manifest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut files = Vec::new();
    for p in paths {
        if p.as_os_str() == STDIN {
            files.push(p.clone());
            continue;
        }
        let meta = std::fs::metadata(p).map_err(|source| CliError::Read {
            path: p.clone(),
            source,
        })?;
        if !meta.is_dir() {
            files.push(p.clone());
            continue;
        }
        for entry in walkdir::WalkDir::new(p).sort_by_file_name() {
            let entry = entry.map_err(|e| CliError::Read {
                path: e.path().map(Path::to_path_buf).unwrap_or_else(|| p.clone()),
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
            })?;
            let is_manifest = entry
                .path()
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
            if entry.file_type().is_file() && is_manifest {
                files.push(entry.into_path());
            }
        }
    }
    Ok(files)
}

/// The path that names standard input (`-f -`).
pub const STDIN: &str = "-";

/// Reads one manifest file, or standard input for [`STDIN`].
fn read_text(path: &Path) -> Result<String, CliError> {
    let read = if path.as_os_str() == STDIN {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    read.map_err(|source| CliError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every object of the manifests under `paths` (files, directories, [`STDIN`]), as raw YAML values
/// with where each came from: multi-document files are split and `kind: List` items expanded, empty
/// documents skipped. For commands that read foreign kinds (`convert`); malformed YAML is an error.
pub fn documents(paths: &[PathBuf]) -> Result<Vec<(Source, Value)>, CliError> {
    let mut out = Vec::new();
    for path in manifest_files(paths)? {
        let text = read_text(&path)?;
        documents_of(&path, &text, &mut out)?;
    }
    Ok(out)
}

/// The objects of one YAML text (see [`documents`]).
pub fn documents_of(
    path: &Path,
    text: &str,
    out: &mut Vec<(Source, Value)>,
) -> Result<(), CliError> {
    fn push(source: &Source, value: Value, out: &mut Vec<(Source, Value)>) {
        if value.is_null() {
            return;
        }
        let is_list = str_at(&value, &["kind"]) == Some("List")
            && str_at(&value, &["apiVersion"]).is_some_and(|v| !v.contains('/'));
        if is_list {
            if let Some(items) = value.get("items").and_then(Value::as_sequence) {
                for item in items {
                    push(source, item.clone(), out);
                }
            }
            return;
        }
        out.push((source.clone(), value));
    }
    for doc in yaml_documents(path, text) {
        let (source, value) = doc?;
        push(&source, value, out);
    }
    Ok(())
}

/// The YAML documents of `text` (read from `path`) with where each came from; a malformed one is an
/// error naming the file, the document and the line.
fn yaml_documents<'a>(
    path: &'a Path,
    text: &'a str,
) -> impl Iterator<Item = Result<(Source, Value), CliError>> + 'a {
    serde_yaml_ng::Deserializer::from_str(text)
        .enumerate()
        .map(move |(i, doc)| {
            let value = Value::deserialize(doc).map_err(|e| CliError::Yaml {
                path: path.to_path_buf(),
                document: i + 1,
                line: e.location().map(|l| l.line()),
                message: e.to_string(),
            })?;
            let source = Source {
                path: path.to_path_buf(),
                document: i + 1,
            };
            Ok((source, value))
        })
}

/// Loads and validates the manifests under `paths` (files, directories, or [`STDIN`]). Objects
/// without a namespace get `default_namespace`.
pub fn load(paths: &[PathBuf], default_namespace: &str) -> Result<Manifests, CliError> {
    let mut m = Manifests::default();
    let mut seen: HashMap<String, Source> = HashMap::new();
    for path in manifest_files(paths)? {
        let text = read_text(&path)?;
        add_text(&mut m, &mut seen, &path, &text, default_namespace)?;
    }
    sort(&mut m);
    Ok(m)
}

/// Parses and validates the manifests of one YAML text as if read from `path` (the entry point of
/// the manifest fuzz target; [`load`] does the same per file).
pub fn load_str(path: &Path, text: &str, default_namespace: &str) -> Result<Manifests, CliError> {
    let mut m = Manifests::default();
    add_text(&mut m, &mut HashMap::new(), path, text, default_namespace)?;
    sort(&mut m);
    Ok(m)
}

fn add_text(
    m: &mut Manifests,
    seen: &mut HashMap<String, Source>,
    path: &Path,
    text: &str,
    default_namespace: &str,
) -> Result<(), CliError> {
    for doc in yaml_documents(path, text) {
        let (source, value) = doc?;
        add_value(m, seen, value, &source, default_namespace)?;
    }
    Ok(())
}

fn sort(m: &mut Manifests) {
    m.secret_refs
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    m.stores
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    m.cluster_stores.sort_by(|a, b| a.name.cmp(&b.name));
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

fn add_value(
    m: &mut Manifests,
    seen: &mut HashMap<String, Source>,
    value: Value,
    source: &Source,
    default_namespace: &str,
) -> Result<(), CliError> {
    if value.is_null() {
        return Ok(()); // an empty document
    }
    let input = |what: String| CliError::Input(format!("{source}: {what}"));
    if !value.is_mapping() {
        return Err(input(
            "not a Kubernetes object (expected a mapping with apiVersion and kind)".into(),
        ));
    }
    let (Some(api_version), Some(kind)) =
        (str_at(&value, &["apiVersion"]), str_at(&value, &["kind"]))
    else {
        return Err(input("the object has no apiVersion or kind".into()));
    };
    let (api_version, kind) = (api_version.to_string(), kind.to_string());
    if kind == "List" && !api_version.contains('/') {
        if let Some(items) = value.get("items").and_then(Value::as_sequence) {
            for item in items {
                add_value(m, seen, item.clone(), source, default_namespace)?;
            }
        }
        return Ok(());
    }
    if kind == "ConfigMap" && api_version == "v1" {
        // Kept for file stores with a configMapRef (their document is encrypted, so it is
        // committed as a ConfigMap next to the store).
        if let Some(name) = str_at(&value, &["metadata", "name"]) {
            let ns = str_at(&value, &["metadata", "namespace"]).unwrap_or(default_namespace);
            let mut keys: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            if let Some(data) = value.get("data").and_then(Value::as_mapping) {
                for (k, v) in data {
                    if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                        keys.insert(k.to_string(), v.as_bytes().to_vec());
                    }
                }
            }
            if let Some(data) = value.get("binaryData").and_then(Value::as_mapping) {
                use base64::Engine;
                for (k, v) in data {
                    let decoded = v
                        .as_str()
                        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok());
                    if let (Some(k), Some(v)) = (k.as_str(), decoded) {
                        keys.insert(k.to_string(), v);
                    }
                }
            }
            m.config_maps
                .insert((ns.to_string(), name.to_string()), keys);
        }
        m.ignored += 1;
        return Ok(());
    }
    if kind == "Namespace" && api_version == "v1" {
        if let (Some(name), Some(labels)) = (
            str_at(&value, &["metadata", "name"]),
            value.get("metadata").and_then(|md| md.get("labels")),
        ) {
            let labels: BTreeMap<String, String> =
                serde_yaml_ng::from_value(labels.clone()).unwrap_or_default();
            m.namespace_labels
                .entry(name.to_string())
                .or_default()
                .extend(labels);
        }
        m.ignored += 1;
        return Ok(());
    }
    let group = api_version.split_once('/').map(|(g, _)| g);
    if group != Some(crate::api::GROUP) {
        m.ignored += 1;
        return Ok(());
    }
    if api_version != format!("{}/v1alpha1", crate::api::GROUP) {
        return Err(input(format!(
            "{kind} has apiVersion {api_version:?}; this version of secretsync reads secretsync.io/v1alpha1"
        )));
    }
    let Some(name) = str_at(&value, &["metadata", "name"]).map(str::to_string) else {
        return Err(input(format!("{kind} has no metadata.name")));
    };
    let namespace = (kind != "ClusterSecretStore" && kind != "ClusterSecretRef").then(|| {
        str_at(&value, &["metadata", "namespace"])
            .unwrap_or(default_namespace)
            .to_string()
    });
    let id = match &namespace {
        Some(ns) => format!("{kind}/{ns}/{name}"),
        None => format!("{kind}/{name}"),
    };
    if let Some(first) = seen.insert(id.clone(), source.clone()) {
        return Err(input(format!("{id} is defined twice (first in {first})")));
    }
    let ns = namespace.clone().unwrap_or_default();
    match kind.as_str() {
        "SecretRef" => {
            let (mut object, problems) = typed::<SecretRef>(&value, |o| {
                let mut p = validation_problems(validation::validate_secretref(&o.spec));
                cel_problems(o.validate_cel().map_err(|e| e.into_vec()), &mut p);
                p
            });
            if let Some(o) = &mut object {
                o.metadata.namespace = Some(ns);
            }
            m.secret_refs.push(Manifest {
                source: source.clone(),
                namespace,
                name,
                object,
                problems,
            });
        }
        "SecretStore" => {
            let (mut object, problems) = typed::<SecretStore>(&value, |o| {
                let mut p = validation_problems(validation::validate_provider(
                    &o.spec.provider,
                    o.spec.refresh_interval.as_deref(),
                ));
                cel_problems(o.validate_cel().map_err(|e| e.into_vec()), &mut p);
                p
            });
            if let Some(o) = &mut object {
                o.metadata.namespace = Some(ns);
            }
            m.stores.push(Manifest {
                source: source.clone(),
                namespace,
                name,
                object,
                problems,
            });
        }
        "ClusterSecretStore" => {
            let (object, problems) = typed::<ClusterSecretStore>(&value, |o| {
                let mut p = validation_problems(validation::validate_provider(
                    &o.spec.provider,
                    o.spec.refresh_interval.as_deref(),
                ));
                cel_problems(o.validate_cel().map_err(|e| e.into_vec()), &mut p);
                p
            });
            m.cluster_stores.push(Manifest {
                source: source.clone(),
                namespace: None,
                name,
                object,
                problems,
            });
        }
        "ClusterSecretRef" => {
            // Recognised and validated; its SecretRefs are not expanded over Namespace manifests.
            let (_, problems) = typed::<ClusterSecretRef>(&value, |o| {
                let mut p = validation_problems(validation::validate_secretref(&o.spec.template));
                cel_problems(o.validate_cel().map_err(|e| e.into_vec()), &mut p);
                p
            });
            if let Some(p) = problems.first() {
                return Err(input(format!(
                    "{id}: {}: {} ({} problem(s))",
                    p.field,
                    p.message,
                    problems.len()
                )));
            }
            m.cluster_secret_refs += 1;
        }
        other => {
            return Err(input(format!(
                "unknown kind {other:?} in {}; expected SecretRef, SecretStore, ClusterSecretStore or ClusterSecretRef",
                crate::api::GROUP
            )));
        }
    }
    Ok(())
}

fn validation_problems(errs: Vec<validation::FieldError>) -> Vec<Problem> {
    errs.into_iter()
        .map(|e| Problem::new(Reason::InvalidSpec, e.field, e.message))
        .collect()
}

/// Adds the CEL failures that the shared validation did not already report for the same subtree
/// (the validation module repeats the CEL rules, with field-precise messages).
fn cel_problems(
    res: Result<(), Vec<kube::core::cel::ValidationError>>,
    problems: &mut Vec<Problem>,
) {
    let Err(errs) = res else { return };
    for e in errs {
        let field = if e.field_path.is_empty() {
            "spec".to_string()
        } else {
            e.field_path.clone()
        };
        if problems.iter().any(|p| p.field.starts_with(&field)) {
            continue;
        }
        problems.push(Problem::new(Reason::InvalidSpec, field, e.message.clone()));
    }
}

/// Deserializes a typed object and validates it. A failure to deserialize is an `InvalidSpec`
/// problem (with any value the parser quoted removed); fields the type does not know are reported.
fn typed<T>(value: &Value, validate: impl Fn(&T) -> Vec<Problem>) -> (Option<T>, Vec<Problem>)
where
    T: serde::de::DeserializeOwned + Serialize,
{
    match serde_yaml_ng::from_value::<T>(value.clone()) {
        Err(e) => (
            None,
            vec![Problem::new(
                Reason::InvalidSpec,
                "spec",
                redact_serde_message(&e.to_string()),
            )],
        ),
        Ok(obj) => {
            let mut problems = Vec::new();
            if let (Ok(orig), Ok(back)) = (serde_json::to_value(value), serde_json::to_value(&obj))
                && let (Some(o), Some(b)) = (orig.get("spec"), back.get("spec"))
            {
                unknown_fields(o, b, "spec", &mut problems);
            }
            problems.extend(validate(&obj));
            (Some(obj), problems)
        }
    }
}

/// Removes the offending value from a serde message ("invalid type: string \"…\", expected …").
fn redact_serde_message(msg: &str) -> String {
    for marker in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(start) = msg.find(marker)
            && let Some(end) = msg.rfind(", expected")
            && end > start
        {
            return format!(
                "{}{}{}",
                &msg[..start],
                marker.trim_end().trim_end_matches(':'),
                &msg[end..]
            );
        }
    }
    msg.to_string()
}

fn is_empty_value(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Object(o) => o.is_empty(),
        serde_json::Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Reports keys present in `orig` but dropped by the typed round trip (`back`): fields the API
/// does not know (typos such as `propery`).
fn unknown_fields(
    orig: &serde_json::Value,
    back: &serde_json::Value,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    match (orig, back) {
        (serde_json::Value::Object(o), serde_json::Value::Object(b)) => {
            for (k, v) in o {
                let sub = format!("{path}.{k}");
                match b.get(k) {
                    Some(bv) => unknown_fields(v, bv, &sub, problems),
                    None if !is_empty_value(v) => problems.push(Problem::new(
                        Reason::InvalidSpec,
                        sub,
                        "unknown field (not part of the secretsync.io/v1alpha1 API)",
                    )),
                    None => {}
                }
            }
        }
        (serde_json::Value::Array(o), serde_json::Value::Array(b)) => {
            for (i, (ov, bv)) in o.iter().zip(b).enumerate() {
                unknown_fields(ov, bv, &format!("{path}[{i}]"), problems);
            }
        }
        _ => {}
    }
}

/// Parses `NAME=VALUE` options.
pub(crate) fn parse_pairs(
    flag: &str,
    items: &[String],
) -> Result<BTreeMap<String, String>, CliError> {
    let mut out = BTreeMap::new();
    for item in items {
        let Some((k, v)) = item
            .split_once('=')
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        else {
            return Err(CliError::Usage(format!(
                "{flag} {item:?}: expected NAME=VALUE"
            )));
        };
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(CliError::Usage(format!("{flag}: {k:?} given twice")));
        }
    }
    Ok(out)
}

/// Loads the manifests of `args` and fails with an input error if there is no SecretRef.
pub fn load_args(args: &OfflineArgs) -> Result<Manifests, CliError> {
    let m = load(&args.files, &args.namespace)?;
    if m.secret_refs.is_empty() {
        return Err(CliError::Input(format!(
            "no SecretRef (secretsync.io/v1alpha1) found in {}",
            args.files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    const SREF: &str = "apiVersion: secretsync.io/v1alpha1\nkind: SecretRef\nmetadata: {name: db}\nspec:\n  storeRef: {name: s}\n  data: [{secretKey: a, remoteRef: {key: k}}]\n";

    #[test]
    fn loads_directories_multi_docs_and_ignores_other_kinds() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yaml",
            &format!("{SREF}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\n"),
        );
        write(
            dir.path(),
            "sub/b.yml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: team, labels: {t: a}}\n",
        );
        write(dir.path(), "sub/notes.txt", "not: [yaml");
        let m = load(&[dir.path().to_path_buf()], "dflt").unwrap();
        assert_eq!(m.secret_refs.len(), 1);
        assert_eq!(m.secret_refs[0].namespace.as_deref(), Some("dflt"));
        assert!(
            m.secret_refs[0].problems.is_empty(),
            "{:?}",
            m.secret_refs[0].problems
        );
        assert_eq!(m.ignored, 2);
        assert_eq!(m.namespace_labels["team"]["t"], "a");
    }

    #[test]
    fn malformed_yaml_names_file_document_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "bad.yaml",
            &format!("{SREF}---\nkind: [unclosed\n"),
        );
        let e = load(&[p], "d").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, CliError::Yaml { document: 2, .. }), "{msg}");
        assert!(msg.contains("bad.yaml") && msg.contains("line"), "{msg}");
    }

    #[test]
    fn duplicates_and_unknown_versions_are_input_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "d.yaml", &format!("{SREF}---\n{SREF}"));
        assert!(
            load(&[p], "d")
                .unwrap_err()
                .to_string()
                .contains("defined twice")
        );
        let p = write(dir.path(), "v.yaml", &SREF.replace("v1alpha1", "v9"));
        assert!(matches!(load(&[p], "d"), Err(CliError::Input(_))));
    }

    #[test]
    fn unknown_fields_and_bad_types_are_problems_without_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "u.yaml",
            &SREF.replace("key: k}", "key: k, propery: x}"),
        );
        let m = load(&[p], "d").unwrap();
        let p = &m.secret_refs[0].problems;
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].field, "spec.data[0].remoteRef.propery");
        assert_eq!(
            redact_serde_message(
                "spec: invalid type: string \"hunter2, expected x\", expected a sequence"
            ),
            "spec: invalid type, expected a sequence"
        );
    }

    #[test]
    fn option_parsing() {
        assert!(parse_pairs("--x", &["a=b".into()]).is_ok());
        assert!(parse_pairs("--x", &["a".into()]).is_err());
        assert!(parse_pairs("--x", &["=b".into()]).is_err());
        assert!(parse_pairs("--x", &["a=1".into(), "a=2".into()]).is_err());
    }
}
