//! Shared by `secretsync check` and `secretsync render`: loading manifests, validating them, resolving
//! stores offline, and running the controller's build step for every SecretRef.
//!
//! # Loading
//!
//! `-f PATH` (repeatable) names files or directories; directories are walked recursively in name
//! order for `*.yaml`, `*.yml` and `*.json`. Files hold one or more YAML documents (JSON is YAML);
//! a `kind: List` is expanded. `secretsync.io/v1alpha1` SecretRefs, SecretStores and
//! ClusterSecretStores are kept; other kinds are counted and ignored (`Namespace` objects also
//! supply namespace labels). An object without a namespace gets `--namespace` (default `default`),
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
//! # Offline store resolution
//!
//! A SecretRef's store is looked up among the loaded manifests with the controller's tenancy rules:
//! a SecretStore only in the SecretRef's namespace; a ClusterSecretStore only if one of its
//! `conditions` admits the namespace (by name, or by `namespaceSelector` over the labels from
//! `Namespace` manifests and `--namespace-labels NS=KEY=VALUE`; without either the labels are
//! unknown and a selector admits nothing), and only for keys within that condition's
//! `allowedKeyPrefixes`. Providers are built offline:
//!
//! - `file` with `path`: the file is read from the local filesystem; a relative path is relative to
//!   the current directory. `--file-store NAME=PATH` reads store `NAME`'s document from `PATH`
//!   instead, which is required for a `configMapRef` store (the ConfigMap is not available offline).
//!   Master keys come from `--master-key-file`, `SECRETSYNC_MASTER_KEY` or
//!   `SECRETSYNC_MASTER_KEY_FILE` (not from `masterKeySecretRef`).
//! - `fake`: allowed offline (its values are in the manifest anyway).
//! - `--store-override NAME=env`: store `NAME` (which must exist in the manifests; tenancy rules
//!   still apply) is served from `SECRETSYNC_*` variables by [`crate::providers::env`], whatever
//!   its provider.
//! - `aws`, `azureKeyVault`, `vault`: not supported offline by this version (`ProviderUnsupported`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::api::{
    ClusterSecretStore, ClusterStoreCondition, ProviderSpec, Reason, SecretRef, SecretRefSpec,
    SecretStore, StoreKind, validation,
};
use crate::audit::HmacKey;
use crate::cli::store::{MasterKeyArgs, load_keyring_from_cli};
use crate::controller::desired::{self, Answers, DesiredSecret};
use crate::controller::stores::StoreError;
use crate::controller::tenancy;
use crate::providers::env::EnvProvider;
use crate::providers::fake::FakeProvider;
use crate::providers::file::{FileProvider, Keyring};
use crate::providers::{Provider, RemoteRef};

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
    fn new(reason: Reason, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            reason,
            field: field.into(),
            message: message.into(),
        }
    }

    fn from_store(e: &StoreError) -> Self {
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
    /// Labels of `Namespace` objects found in the manifests.
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// How many objects of other kinds were ignored.
    pub ignored: usize,
}

/// Lists the manifest files under `paths` (directories recursively, in name order).
fn manifest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut files = Vec::new();
    for p in paths {
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

/// Loads and validates the manifests under `paths`. Objects without a namespace get `default_namespace`.
pub fn load(paths: &[PathBuf], default_namespace: &str) -> Result<Manifests, CliError> {
    let mut m = Manifests::default();
    let mut seen: HashMap<String, Source> = HashMap::new();
    for path in manifest_files(paths)? {
        let text = std::fs::read_to_string(&path).map_err(|source| CliError::Read {
            path: path.clone(),
            source,
        })?;
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
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let source = Source {
            path: path.to_path_buf(),
            document: i + 1,
        };
        let value = Value::deserialize(doc).map_err(|e| CliError::Yaml {
            path: path.to_path_buf(),
            document: i + 1,
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        })?;
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
    if kind == "Namespace" && api_version == "v1" {
        if let (Some(name), Some(labels)) = (
            str_at(&value, &["metadata", "name"]),
            value.get("metadata").and_then(|md| md.get("labels")),
        ) {
            let labels: BTreeMap<String, String> =
                serde_yaml::from_value(labels.clone()).unwrap_or_default();
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
    let namespace = (kind != "ClusterSecretStore").then(|| {
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
        other => {
            return Err(input(format!(
                "unknown kind {other:?} in {}; expected SecretRef, SecretStore or ClusterSecretStore",
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
    match serde_yaml::from_value::<T>(value.clone()) {
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
fn parse_pairs(flag: &str, items: &[String]) -> Result<BTreeMap<String, String>, CliError> {
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

/// A store resolved offline for one SecretRef.
#[derive(Clone)]
pub struct OfflineStore {
    /// `SecretStore` or `ClusterSecretStore`.
    pub kind: StoreKind,
    /// The store's name.
    pub name: String,
    /// Its provider.
    pub provider: Arc<dyn Provider>,
    /// For cluster stores: the conditions admitting the SecretRef's namespace.
    pub admitting: Option<Vec<ClusterStoreCondition>>,
}

impl OfflineStore {
    /// The controller's key rule for cluster stores (`allowedKeyPrefixes`).
    fn check_key(&self, namespace: &str, key: &str) -> Result<(), StoreError> {
        crate::controller::stores::check_key(&self.name, self.admitting.as_deref(), namespace, key)
    }
}

/// A provider built for a store, or why it could not be.
type BuiltProvider = Result<Arc<dyn Provider>, Problem>;

/// Resolves stores and builds providers offline (see the module docs). Providers are built once per store.
pub struct Offline<'a> {
    manifests: &'a Manifests,
    file_stores: BTreeMap<String, PathBuf>,
    env_stores: BTreeSet<String>,
    namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    master_key_file: Option<PathBuf>,
    keyring: RefCell<Option<Result<Keyring, String>>>,
    providers: RefCell<HashMap<String, BuiltProvider>>,
}

impl<'a> Offline<'a> {
    /// Parses the store options. Options naming no store in the manifests are warned about on stderr.
    pub fn new(manifests: &'a Manifests, args: &OfflineArgs) -> Result<Self, CliError> {
        let file_stores: BTreeMap<String, PathBuf> =
            parse_pairs("--file-store", &args.file_stores)?
                .into_iter()
                .map(|(k, v)| (k, PathBuf::from(v)))
                .collect();
        let overrides = parse_pairs("--store-override", &args.store_overrides)?;
        let mut env_stores = BTreeSet::new();
        for (name, provider) in overrides {
            if provider != "env" {
                return Err(CliError::Usage(format!(
                    "--store-override {name}={provider}: the only override is `env`"
                )));
            }
            env_stores.insert(name);
        }
        let mut namespace_labels = manifests.namespace_labels.clone();
        for item in &args.namespace_labels {
            let parsed = item
                .split_once('=')
                .and_then(|(ns, kv)| Some((ns, kv.split_once('=')?)))
                .filter(|(ns, (k, _))| !ns.is_empty() && !k.is_empty());
            let Some((ns, (k, v))) = parsed else {
                return Err(CliError::Usage(format!(
                    "--namespace-labels {item:?}: expected NS=KEY=VALUE"
                )));
            };
            namespace_labels
                .entry(ns.to_string())
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
        let known: BTreeSet<&str> = manifests
            .stores
            .iter()
            .map(|s| s.name.as_str())
            .chain(manifests.cluster_stores.iter().map(|s| s.name.as_str()))
            .collect();
        for name in file_stores
            .keys()
            .map(|n| ("--file-store", n))
            .chain(env_stores.iter().map(|n| ("--store-override", n)))
        {
            if !known.contains(name.1.as_str()) {
                eprintln!(
                    "warning: {} {:?}: no store of that name in the manifests",
                    name.0, name.1
                );
            }
        }
        Ok(Self {
            manifests,
            file_stores,
            env_stores,
            namespace_labels,
            master_key_file: args.master_key.master_key_file.clone(),
            keyring: RefCell::new(None),
            providers: RefCell::new(HashMap::new()),
        })
    }

    /// Resolves the store of a SecretRef under the tenancy rules and builds its provider.
    pub fn resolve(&self, sref: &SecretRef) -> Result<OfflineStore, Problem> {
        let ns = sref.metadata.namespace.clone().unwrap_or_default();
        let name = sref.spec.store_ref.name.clone();
        let invalid = |id: &str, problems: &[Problem]| {
            let first = problems
                .first()
                .map(|p| format!("{}: {}", p.field, p.message))
                .unwrap_or_else(|| "it could not be read".into());
            Problem::from_store(&StoreError::InvalidConfig {
                store: name.clone(),
                message: format!("{id} is invalid: {first}"),
            })
        };
        match sref.spec.store_ref.kind.unwrap_or_default() {
            StoreKind::SecretStore => {
                let store = self
                    .manifests
                    .stores
                    .iter()
                    .find(|s| s.name == name && s.namespace.as_deref() == Some(ns.as_str()))
                    .ok_or_else(|| {
                        Problem::from_store(&StoreError::NotFound {
                            kind: "SecretStore",
                            name: name.clone(),
                            namespace: Some(ns.clone()),
                        })
                    })?;
                let id = store.id("SecretStore");
                let obj = match &store.object {
                    Some(o) if store.problems.is_empty() => o,
                    _ => return Err(invalid(&id, &store.problems)),
                };
                Ok(OfflineStore {
                    kind: StoreKind::SecretStore,
                    provider: self.provider(&id, &name, &obj.spec.provider)?,
                    name,
                    admitting: None,
                })
            }
            StoreKind::ClusterSecretStore => {
                let store = self
                    .manifests
                    .cluster_stores
                    .iter()
                    .find(|s| s.name == name)
                    .ok_or_else(|| {
                        Problem::from_store(&StoreError::NotFound {
                            kind: "ClusterSecretStore",
                            name: name.clone(),
                            namespace: None,
                        })
                    })?;
                let id = store.id("ClusterSecretStore");
                let obj = match &store.object {
                    Some(o) if store.problems.is_empty() => o,
                    _ => return Err(invalid(&id, &store.problems)),
                };
                let labels = self.namespace_labels.get(&ns);
                let admitting: Vec<ClusterStoreCondition> = tenancy::admitting(
                    &obj.spec.conditions,
                    &ns,
                    labels.unwrap_or(&BTreeMap::new()),
                )
                .into_iter()
                .cloned()
                .collect();
                if admitting.is_empty() {
                    let mut p = Problem::from_store(&StoreError::NamespaceNotAllowed {
                        store: name.clone(),
                        namespace: ns.clone(),
                    });
                    if labels.is_none()
                        && obj
                            .spec
                            .conditions
                            .iter()
                            .any(|c| c.namespace_selector.is_some())
                    {
                        p.message.push_str(&format!(
                            " (the labels of namespace {ns:?} are unknown offline: add its Namespace manifest or pass --namespace-labels {ns}=KEY=VALUE)"
                        ));
                    }
                    return Err(p);
                }
                Ok(OfflineStore {
                    kind: StoreKind::ClusterSecretStore,
                    provider: self.provider(&id, &name, &obj.spec.provider)?,
                    name,
                    admitting: Some(admitting),
                })
            }
        }
    }

    fn keyring(&self) -> Result<Keyring, String> {
        self.keyring
            .borrow_mut()
            .get_or_insert_with(|| {
                load_keyring_from_cli(self.master_key_file.as_deref()).map_err(|e| format!("{e:#}"))
            })
            .clone()
    }

    fn provider(
        &self,
        id: &str,
        name: &str,
        spec: &ProviderSpec,
    ) -> Result<Arc<dyn Provider>, Problem> {
        if let Some(p) = self.providers.borrow().get(id) {
            return p.clone();
        }
        let built = self.build_provider(name, spec);
        self.providers
            .borrow_mut()
            .insert(id.to_string(), built.clone());
        built
    }

    fn build_provider(
        &self,
        name: &str,
        spec: &ProviderSpec,
    ) -> Result<Arc<dyn Provider>, Problem> {
        let invalid = |message: String| {
            Problem::from_store(&StoreError::InvalidConfig {
                store: name.to_string(),
                message,
            })
        };
        if self.env_stores.contains(name) {
            return Ok(Arc::new(EnvProvider::from_process_env()));
        }
        match spec {
            ProviderSpec {
                fake: Some(fake), ..
            } => Ok(Arc::new(FakeProvider::new(fake.clone()))),
            ProviderSpec {
                file: Some(file), ..
            } => {
                let path = match (self.file_stores.get(name), &file.path, &file.config_map_ref) {
                    (Some(p), _, _) => p.clone(),
                    (None, Some(p), _) => PathBuf::from(p),
                    (None, None, Some(cm)) => {
                        return Err(invalid(format!(
                            "it reads ConfigMap {:?} (key {:?}), which is not available offline; pass --file-store {name}=PATH",
                            cm.name, cm.key
                        )));
                    }
                    (None, None, None) => {
                        return Err(invalid("file: neither path nor configMapRef is set".into()));
                    }
                };
                let keyring = self.keyring().map_err(invalid)?;
                let provider = FileProvider::open(&path, keyring).map_err(|e| {
                    Problem::new(e.reason(), "spec.storeRef", format!("store {name:?}: {e}"))
                })?;
                Ok(Arc::new(provider))
            }
            // aws, azureKeyVault and vault: one arm each once they can be built offline.
            other => Err(Problem::new(
                Reason::ProviderUnsupported,
                "spec.storeRef",
                format!(
                    "store {name:?}: provider {} is not supported offline by this version of secretsync (pass --store-override {name}=env to serve it from SECRETSYNC_* variables)",
                    other.kind_name()
                ),
            )),
        }
    }
}

/// The outcome for one SecretRef.
#[derive(Debug)]
pub struct Evaluated {
    /// The SecretRef's namespace.
    pub namespace: String,
    /// The SecretRef's name.
    pub name: String,
    /// The store it references (`storeRef.name`).
    pub store: String,
    /// The store kind referenced.
    pub store_kind: StoreKind,
    /// Every problem found (empty: it resolves and builds).
    pub problems: Vec<Problem>,
    /// The Secret the controller would write, when there are no problems.
    pub desired: Option<DesiredSecret>,
}

/// Reads what a SecretRef needs from its store, like the controller's fetch (tenancy checks on
/// every key), but collecting every failure instead of stopping at the first. A `find` that
/// matches nothing is a problem here.
pub async fn fetch(
    store: &OfflineStore,
    namespace: &str,
    spec: &SecretRefSpec,
) -> (Answers, Vec<Problem>) {
    let plan = desired::plan(spec);
    let mut fields: Vec<(RemoteRef, String)> = Vec::new();
    let mut field_of = |r: RemoteRef, f: String| {
        if !fields.iter().any(|(x, _)| *x == r) {
            fields.push((r, f));
        }
    };
    for (i, df) in spec.data_from.iter().enumerate() {
        if let Some(ex) = &df.extract {
            field_of(
                RemoteRef {
                    key: ex.key.clone(),
                    version: ex.version.clone(),
                },
                format!("spec.dataFrom[{i}].extract.key"),
            );
        }
    }
    for (i, item) in spec.data.iter().enumerate() {
        field_of(
            RemoteRef {
                key: item.remote_ref.key.clone(),
                version: item.remote_ref.version.clone(),
            },
            format!("spec.data[{i}].remoteRef.key"),
        );
    }
    let mut reads: Vec<(RemoteRef, String)> = plan
        .reads
        .iter()
        .map(|r| {
            let f = fields
                .iter()
                .find(|(x, _)| x == r)
                .map(|(_, f)| f.clone())
                .unwrap_or_else(|| "spec".into());
            (r.clone(), f)
        })
        .collect();
    let mut problems = Vec::new();
    let mut answers = Answers::default();
    let has_prefixes = store
        .admitting
        .as_ref()
        .is_some_and(|c| c.iter().any(|c| !c.allowed_key_prefixes.is_empty()));
    for (i, q) in &plan.finds {
        let field = format!("spec.dataFrom[{i}].find");
        let scope = match &q.path {
            Some(p) => store.check_key(namespace, p),
            None if has_prefixes => store.check_key(namespace, ""),
            None => Ok(()),
        };
        if let Err(e) = scope {
            problems.push(Problem::new(
                e.reason(),
                format!("{field}.path"),
                e.to_string(),
            ));
            continue;
        }
        match store.provider.find(q).await {
            Err(e) => problems.push(Problem::new(e.reason(), &field, e.to_string())),
            Ok(keys) if keys.is_empty() => problems.push(Problem::new(
                Reason::RemoteKeyNotFound,
                &field,
                format!(
                    "the search matched no remote keys in store {:?}",
                    store.name
                ),
            )),
            Ok(keys) => {
                for k in &keys {
                    let r = RemoteRef::latest(k.clone());
                    if !reads.iter().any(|(x, _)| *x == r) {
                        reads.push((r, field.clone()));
                    }
                }
                answers.found.insert(*i, keys);
            }
        }
    }
    let mut allowed = Vec::new();
    for (r, field) in reads {
        match store.check_key(namespace, &r.key) {
            Ok(()) => allowed.push((r, field)),
            Err(e) => problems.push(Problem::new(e.reason(), field, e.to_string())),
        }
    }
    let refs: Vec<RemoteRef> = allowed.iter().map(|(r, _)| r.clone()).collect();
    let results = store.provider.get_many(&refs).await;
    for ((r, field), res) in allowed.into_iter().zip(results) {
        match res {
            Ok(v) => {
                answers.values.insert(r, v);
            }
            Err(e) => problems.push(Problem::new(e.reason(), field, e.to_string())),
        }
    }
    (answers, problems)
}

/// Judges every SecretRef: validation, store resolution, reads, and the controller's build step
/// ([`desired::build`]) with the namespace's key derived from `hmac`, as the controller does.
/// Results are in the manifests' (sorted) order.
pub async fn evaluate(
    manifests: &Manifests,
    offline: &Offline<'_>,
    hmac: &HmacKey,
) -> Vec<Evaluated> {
    let mut out = Vec::with_capacity(manifests.secret_refs.len());
    for m in &manifests.secret_refs {
        let mut ev = Evaluated {
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone(),
            store: String::new(),
            store_kind: StoreKind::SecretStore,
            problems: m.problems.clone(),
            desired: None,
        };
        let Some(sref) = &m.object else {
            out.push(ev);
            continue;
        };
        ev.store = sref.spec.store_ref.name.clone();
        ev.store_kind = sref.spec.store_ref.kind.unwrap_or_default();
        let store = match offline.resolve(sref) {
            Ok(s) => s,
            Err(p) => {
                ev.problems.push(p);
                out.push(ev);
                continue;
            }
        };
        let (answers, problems) = fetch(&store, &ev.namespace, &sref.spec).await;
        ev.problems.extend(problems);
        if ev.problems.is_empty() {
            match desired::build(
                &m.name,
                &sref.spec,
                &answers,
                &hmac.for_namespace(&ev.namespace),
            ) {
                Ok(d) => ev.desired = Some(d),
                Err(e) => ev.problems.push(Problem::new(e.reason, e.field, e.message)),
            }
        }
        out.push(ev);
    }
    out
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
