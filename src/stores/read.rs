//! Reading what a SecretRef needs from its store, with the key rule of cluster stores applied to
//! every search and every read (DESIGN §2.11). The controller and `check`/`render` share this step:
//! the controller through its fetch layer (cached, batched, rate-limited), stopping at the first
//! refusal; the offline commands straight from the provider, collecting every failure with the
//! field it concerns.

use async_trait::async_trait;

use super::{Admitted, StoreError};
use crate::api::{MAX_SECRET_BYTES, SecretRefSpec};
use crate::controller::desired::{self, Answers};
use crate::providers::{FetchedSecret, FindQuery, ProviderError, RemoteRef};

/// How reads reach the provider.
#[async_trait]
pub trait Reader: Send + Sync {
    /// A search (`dataFrom.find`).
    async fn find(&self, q: &FindQuery) -> Result<Vec<String>, ProviderError>;
    /// Reads, one answer per input, in order.
    async fn get_many(&self, refs: &[RemoteRef]) -> Vec<Result<FetchedSecret, ProviderError>>;
    /// Reads sent at once (more for providers that batch).
    fn part(&self) -> usize {
        4
    }
}

/// Why something the SecretRef needs could not be read.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadError {
    /// The store refused it (the key rule of a cluster store).
    Store(StoreError),
    /// A search (`dataFrom.find`) failed.
    Search(ProviderError),
    /// A read failed.
    Provider(ProviderError),
}

impl ReadError {
    /// Stable reason.
    pub fn reason(&self) -> crate::api::Reason {
        match self {
            Self::Store(e) => e.reason(),
            Self::Search(e) | Self::Provider(e) => e.reason(),
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Store(e) => e.fmt(f),
            Self::Search(e) | Self::Provider(e) => e.fmt(f),
        }
    }
}

/// One failure and the spec field it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The field, e.g. `spec.data[0].remoteRef.key`.
    pub field: String,
    /// What happened.
    pub error: ReadError,
}

/// Everything one read step learnt.
#[derive(Debug, Default)]
pub struct Report {
    /// The names each `find` matched (the values are in `reads`; [`Report::into_answers`]).
    pub answers: Answers,
    /// Every read made, in order, with its answer (values, audit records, metrics, the not-found
    /// fold). Each value is held once.
    pub reads: Vec<(RemoteRef, Result<FetchedSecret, ProviderError>)>,
    /// Refusals and failures, with their fields (empty: everything answered).
    pub failures: Vec<Failure>,
}

impl Report {
    /// The searches' names and every value read.
    pub fn into_answers(self) -> Answers {
        let mut answers = self.answers;
        for (r, res) in self.reads {
            if let Ok(v) = res {
                answers.values.insert(r, v);
            }
        }
        answers
    }

    /// The first refusal by the store, if any (a tenancy denial: nothing more is read).
    pub fn refusal(&self) -> Option<&StoreError> {
        self.failures.iter().find_map(|f| match &f.error {
            ReadError::Store(e) => Some(e),
            ReadError::Search(_) | ReadError::Provider(_) => None,
        })
    }

    /// The first failed search, if any.
    pub fn failed_search(&self) -> Option<&ProviderError> {
        self.failures.iter().find_map(|f| match &f.error {
            ReadError::Search(e) => Some(e),
            ReadError::Store(_) | ReadError::Provider(_) => None,
        })
    }
}

/// Whether to stop early (the controller) or to collect every failure (`check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Stop at the first refusal or failed search: nothing would be written, so nothing more is
    /// read. Otherwise every value is read (deleting needs every read to say not found).
    StopAtRefusal,
    /// Collect every refusal and failure.
    CollectAll,
}

/// The spec field that first asks for each read.
fn field_of(spec: &SecretRefSpec, r: &RemoteRef) -> String {
    spec.data_from
        .iter()
        .enumerate()
        .find(|(_, df)| {
            df.extract
                .as_ref()
                .is_some_and(|ex| ex.key == r.key && ex.version == r.version)
        })
        .map(|(i, _)| format!("spec.dataFrom[{i}].extract.key"))
        .or_else(|| {
            spec.data
                .iter()
                .position(|d| d.remote_ref.key == r.key && d.remote_ref.version == r.version)
                .map(|i| format!("spec.data[{i}].remoteRef.key"))
        })
        .unwrap_or_else(|| "spec".into())
}

/// Reads what `spec` needs from `store` for a SecretRef in `namespace` (see the module docs). Reads
/// go out in parts and stop once the answers pass the Secret limit (DESIGN §2.8): a SecretRef naming
/// many large values never makes the caller hold much more than the limit.
pub async fn read(
    store: &Admitted,
    namespace: &str,
    spec: &SecretRefSpec,
    reader: &dyn Reader,
    mode: Mode,
) -> Report {
    let plan = desired::plan(spec);
    let mut report = Report::default();
    let mut reads: Vec<(RemoteRef, String)> = plan
        .reads
        .iter()
        .map(|r| (r.clone(), field_of(spec, r)))
        .collect();
    let stop = |report: &Report| {
        mode == Mode::StopAtRefusal
            && (report.refusal().is_some() || report.failed_search().is_some())
    };
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
            report.failures.push(Failure {
                field: format!("{field}.path"),
                error: ReadError::Store(e),
            });
            if stop(&report) {
                return report;
            }
            continue;
        }
        match reader.find(q).await {
            Err(e) => {
                report.failures.push(Failure {
                    field: field.clone(),
                    error: ReadError::Search(e),
                });
                if stop(&report) {
                    return report;
                }
            }
            Ok(keys) => {
                for k in &keys {
                    if let Err(e) = store.check_key(namespace, k) {
                        report.failures.push(Failure {
                            field: field.clone(),
                            error: ReadError::Store(e),
                        });
                        if stop(&report) {
                            return report;
                        }
                        continue;
                    }
                    let r = RemoteRef::latest(k.clone());
                    if !reads.iter().any(|(x, _)| *x == r) {
                        reads.push((r, field.clone()));
                    }
                }
                report.answers.found.insert(*i, keys);
            }
        }
    }
    let mut allowed = Vec::with_capacity(reads.len());
    for (r, field) in reads {
        match store.check_key(namespace, &r.key) {
            Ok(()) => allowed.push((r, field)),
            Err(e) => {
                report.failures.push(Failure {
                    field,
                    error: ReadError::Store(e),
                });
                if stop(&report) {
                    return report;
                }
            }
        }
    }
    let mut total = 0usize;
    for chunk in allowed.chunks(reader.part().max(1)) {
        let refs: Vec<RemoteRef> = chunk.iter().map(|(r, _)| r.clone()).collect();
        let answers = if total > MAX_SECRET_BYTES {
            refs.iter()
                .map(|r| {
                    Err(ProviderError::TooLarge {
                        key: Some(r.key.clone()),
                        limit: MAX_SECRET_BYTES,
                    })
                })
                .collect()
        } else {
            reader.get_many(&refs).await
        };
        for ((r, field), res) in chunk.iter().zip(answers) {
            match &res {
                Ok(v) => total += v.value.len(),
                Err(e) => report.failures.push(Failure {
                    field: field.clone(),
                    error: ReadError::Provider(e.clone()),
                }),
            }
            report.reads.push((r.clone(), res));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::api::{ClusterStoreCondition, ProviderSpec, StoreKind};
    use crate::providers::SecretMetadata;
    use crate::value::SecretBytes;

    /// Answers every key with a value of `size` bytes, except keys containing `missing`;
    /// remembers what was asked.
    struct Recorder {
        size: usize,
        finds: Vec<String>,
        asked: Mutex<Vec<String>>,
        searched: Mutex<usize>,
    }

    impl Recorder {
        fn new(size: usize, finds: &[&str]) -> Self {
            Recorder {
                size,
                finds: finds.iter().map(|s| s.to_string()).collect(),
                asked: Mutex::new(Vec::new()),
                searched: Mutex::new(0),
            }
        }
        fn asked(&self) -> Vec<String> {
            self.asked.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Reader for Recorder {
        async fn find(&self, _q: &FindQuery) -> Result<Vec<String>, ProviderError> {
            *self.searched.lock().unwrap() += 1;
            if self.finds.is_empty() {
                return Err(ProviderError::Transient {
                    message: "search failed".into(),
                });
            }
            Ok(self.finds.clone())
        }
        async fn get_many(&self, refs: &[RemoteRef]) -> Vec<Result<FetchedSecret, ProviderError>> {
            refs.iter()
                .map(|r| {
                    self.asked.lock().unwrap().push(r.key.clone());
                    if r.key.contains("missing") {
                        Err(ProviderError::NotFound { key: r.key.clone() })
                    } else {
                        Ok(FetchedSecret {
                            value: SecretBytes::new(vec![b'x'; self.size]),
                            meta: SecretMetadata::default(),
                        })
                    }
                })
                .collect()
        }
    }

    fn cluster_store(prefixes: &[&str]) -> Admitted {
        Admitted {
            kind: StoreKind::ClusterSecretStore,
            name: "shared".into(),
            uid: "u".into(),
            config_version: "g1:".into(),
            credential_namespace: "secretsync-system".into(),
            ambient_ok: true,
            provider: ProviderSpec::default(),
            rate_limit: None,
            refresh_interval: None,
            admitting: Some(vec![ClusterStoreCondition {
                namespace_selector: None,
                namespaces: vec!["team".into()],
                allowed_key_prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
            }]),
        }
    }

    fn spec(yaml: &str) -> SecretRefSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[tokio::test]
    async fn a_refused_key_stops_the_controller_before_any_read_and_check_collects_all() {
        let s = spec(
            "storeRef: {name: shared, kind: ClusterSecretStore}\ndata:\n- {secretKey: a, remoteRef: {key: /team/a}}\n- {secretKey: b, remoteRef: {key: /prod/b}}\n- {secretKey: c, remoteRef: {key: /team/missing/c}}\n",
        );
        let store = cluster_store(&["/{namespace}/"]);
        let reader = Recorder::new(3, &[]);
        let report = read(&store, "team", &s, &reader, Mode::StopAtRefusal).await;
        assert!(
            matches!(report.refusal(), Some(StoreError::KeyNotAllowed { key, .. }) if key == "/prod/b")
        );
        assert!(reader.asked().is_empty(), "read after a refusal");

        let reader = Recorder::new(3, &[]);
        let report = read(&store, "team", &s, &reader, Mode::CollectAll).await;
        let fields: Vec<(&str, String)> = report
            .failures
            .iter()
            .map(|f| (f.field.as_str(), f.error.reason().as_str().to_string()))
            .collect();
        assert_eq!(
            fields,
            [
                ("spec.data[1].remoteRef.key", "KeyNotAllowed".to_string()),
                (
                    "spec.data[2].remoteRef.key",
                    "RemoteKeyNotFound".to_string()
                ),
            ]
        );
        // The refused key is never sent to the provider, the others are.
        assert_eq!(reader.asked(), ["/team/a", "/team/missing/c"]);
        assert_eq!(report.into_answers().values.len(), 1);
    }

    #[tokio::test]
    async fn search_scope_and_results_obey_the_key_rule() {
        // A search outside the prefix is refused without being sent.
        let s = spec(
            "storeRef: {name: shared, kind: ClusterSecretStore}\ndataFrom:\n- find: {path: /prod/}\n",
        );
        let store = cluster_store(&["/{namespace}/"]);
        let reader = Recorder::new(3, &["/prod/x"]);
        let report = read(&store, "team", &s, &reader, Mode::StopAtRefusal).await;
        assert_eq!(report.failures[0].field, "spec.dataFrom[0].find.path");
        assert_eq!(*reader.searched.lock().unwrap(), 0);
        // A search without a path under a prefix rule is refused too (it would list everything).
        let s = spec(
            "storeRef: {name: shared, kind: ClusterSecretStore}\ndataFrom:\n- find: {name: {regexp: x}}\n",
        );
        let report = read(&store, "team", &s, &reader, Mode::StopAtRefusal).await;
        assert!(report.refusal().is_some());
        // A name a search returns outside the prefix is refused, not read.
        let s = spec(
            "storeRef: {name: shared, kind: ClusterSecretStore}\ndataFrom:\n- find: {path: /team/}\n",
        );
        let reader = Recorder::new(3, &["/team/ok", "/prod/leak"]);
        let report = read(&store, "team", &s, &reader, Mode::CollectAll).await;
        assert!(
            matches!(report.refusal(), Some(StoreError::KeyNotAllowed { key, .. }) if key == "/prod/leak")
        );
        assert_eq!(reader.asked(), ["/team/ok"]);
    }

    #[tokio::test]
    async fn a_failed_search_stops_the_controller_and_is_collected_offline() {
        let s = spec(
            "storeRef: {name: shared, kind: ClusterSecretStore}\ndata:\n- {secretKey: a, remoteRef: {key: /team/a}}\ndataFrom:\n- find: {path: /team/}\n",
        );
        let store = cluster_store(&[]);
        let reader = Recorder::new(3, &[]);
        let report = read(&store, "team", &s, &reader, Mode::StopAtRefusal).await;
        assert!(report.failed_search().is_some());
        assert!(
            reader.asked().is_empty(),
            "values read although nothing will be written"
        );
        let reader = Recorder::new(3, &[]);
        let report = read(&store, "team", &s, &reader, Mode::CollectAll).await;
        assert_eq!(report.failures.len(), 1);
        assert_eq!(reader.asked(), ["/team/a"]);
    }

    #[tokio::test]
    async fn reads_stop_once_the_answers_pass_the_secret_limit() {
        let data: String = (0..40)
            .map(|i| format!("- {{secretKey: k{i}, remoteRef: {{key: /team/{i}}}}}\n"))
            .collect();
        let s = spec(&format!("storeRef: {{name: s}}\ndata:\n{data}"));
        let mut store = cluster_store(&[]);
        store.admitting = None;
        let reader = Recorder::new(200 * 1024, &[]);
        let report = read(&store, "team", &s, &reader, Mode::StopAtRefusal).await;
        // 4 per part of 200 KiB values: the second part passes 1 MiB and is the last one sent.
        const { assert!(MAX_SECRET_BYTES < 8 * 200 * 1024 && MAX_SECRET_BYTES > 4 * 200 * 1024) };
        assert_eq!(reader.asked().len(), 8);
        assert_eq!(report.reads.len(), 40);
        assert!(
            report
                .failures
                .iter()
                .all(|f| matches!(f.error, ReadError::Provider(ProviderError::TooLarge { .. })))
        );
    }
}
