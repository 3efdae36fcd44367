//! Converting External Secrets Operator (ESO) manifests to secretsync's API (`secretsync convert`).
//!
//! Pure functions: one ESO object (a JSON value) in, the secretsync objects it becomes (with the
//! semantic differences as warnings) or the reason it cannot be converted out. Covered:
//! `ExternalSecret`, `ClusterExternalSecret` (explicit `namespaces` only), `SecretStore` and
//! `ClusterSecretStore` of `external-secrets.io/v1` and `v1beta1`, providers `aws` (Secrets Manager),
//! `azurekv`, `vault` and `fake`. Every ESO field is either mapped, dropped with a warning (only
//! fields that change no value: ESO's own store re-validation interval, retry settings, push-only
//! settings), or refused with its field path: nothing is guessed. The field table is in
//! docs/migrate-from-eso.md.
//!
//! Errors and warnings name fields and objects, never values (a `fake` store's values are copied,
//! not quoted).

pub mod gotemplate;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ObjectMeta;
use serde_json::{Map, Value};

use crate::api::{
    self, AwsAuth, AwsJwtAuth, AwsProvider, AwsSecretRef, AzureAuth, AzureKeyVaultProvider,
    AzureManagedIdentity, AzureWorkloadIdentity, ClusterSecretStore, ClusterSecretStoreSpec,
    ClusterStoreCondition, CreationPolicy, DataFrom, DataItem, DeletionPolicy, FakeEntry,
    FakeProvider, FindSpec, NameMatcher, ProviderSpec, RemoteRefSpec, SecretKeySelector,
    SecretName, SecretRef, SecretRefSpec, SecretStore, SecretStoreSpec, ServiceAccountRef,
    StoreKind, StoreRef, Target, Template, TemplateMergePolicy, VaultAppRoleAuth, VaultAuth,
    VaultKubernetesAuth, VaultKvVersion, VaultProvider, VaultTokenAuth,
};

/// The ESO API group.
pub const ESO_GROUP: &str = "external-secrets.io";

/// Why an ESO object cannot be converted. Messages name the field, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// ESO has it, secretsync does not (or not with the same meaning).
    #[error("{field}: {reason}")]
    Unsupported {
        /// The ESO field path (`spec.dataFrom[0].rewrite`).
        field: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The ESO object is malformed (a required field missing, a wrong type).
    #[error("{field}: {reason}")]
    Invalid {
        /// The ESO field path.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn unsupported<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, ConvertError> {
    Err(ConvertError::Unsupported {
        field: field.into(),
        reason: reason.into(),
    })
}

fn invalid<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, ConvertError> {
    Err(ConvertError::Invalid {
        field: field.into(),
        reason: reason.into(),
    })
}

/// Conversion options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Namespace of objects that set none (like kubectl's).
    pub default_namespace: String,
    /// Emit the adoption opt-in ([`api::ADOPT_ANNOTATION`]) on every SecretRef.
    pub adopt: bool,
}

/// One secretsync object written from an ESO object.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// `SecretRef`, `SecretStore` or `ClusterSecretStore`.
    pub kind: &'static str,
    /// Its namespace (`None` for a ClusterSecretStore).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// The object.
    pub object: Value,
    /// Semantic differences to know about (no values).
    pub warnings: Vec<String>,
}

impl Converted {
    /// `Kind/namespace/name` or `Kind/name`.
    pub fn id(&self) -> String {
        id(self.kind, self.namespace.as_deref(), &self.name)
    }
}

fn id(kind: &str, ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{kind}/{ns}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// The result for one input object.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Not an ESO object: left alone.
    Ignored,
    /// Converted into these objects.
    Converted {
        /// The ESO object (`ExternalSecret/ns/name`).
        from: String,
        /// What it became.
        objects: Vec<Converted>,
    },
    /// Not convertible.
    Refused {
        /// The ESO object (`ExternalSecret/ns/name`), or its kind when it has no name.
        from: String,
        /// Why.
        error: ConvertError,
    },
}

/// A view of a JSON object that tracks its field path.
#[derive(Clone, Copy)]
struct O<'a> {
    m: &'a Map<String, Value>,
    path: &'a str,
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Number(_) => false,
    }
}

impl<'a> O<'a> {
    fn p(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    fn get(&self, k: &str) -> Option<&'a Value> {
        self.m.get(k).filter(|v| !is_empty(v))
    }

    fn s(&self, k: &str) -> Result<Option<String>, ConvertError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => invalid(self.p(k), "expected a string"),
        }
    }

    fn req(&self, k: &str) -> Result<String, ConvertError> {
        match self.s(k)? {
            Some(s) => Ok(s),
            None => invalid(self.p(k), "required"),
        }
    }

    fn bool(&self, k: &str) -> Result<bool, ConvertError> {
        match self.get(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => invalid(self.p(k), "expected true or false"),
        }
    }

    fn smap(&self, k: &str) -> Result<BTreeMap<String, String>, ConvertError> {
        let Some(v) = self.get(k) else {
            return Ok(BTreeMap::new());
        };
        let Some(m) = v.as_object() else {
            return invalid(self.p(k), "expected a map of strings");
        };
        m.iter()
            .map(|(key, v)| match v {
                Value::String(s) => Ok((key.clone(), s.clone())),
                Value::Number(n) => Ok((key.clone(), n.to_string())),
                Value::Bool(b) => Ok((key.clone(), b.to_string())),
                _ => invalid(format!("{}.{key}", self.p(k)), "expected a string"),
            })
            .collect()
    }

    /// Refuses any set field outside `known` (ESO has it, secretsync has no equivalent).
    fn only(&self, known: &[&str]) -> Result<(), ConvertError> {
        for (k, v) in self.m {
            if !known.contains(&k.as_str()) && !is_empty(v) {
                return unsupported(
                    self.p(k),
                    "secretsync has no equivalent of this field; remove it or keep this object on ESO",
                );
            }
        }
        Ok(())
    }
}

/// Walks a JSON object with owned paths (simpler than borrowing views).
#[derive(Clone)]
struct J {
    m: Map<String, Value>,
    path: String,
}

impl J {
    fn of(v: &Value, path: impl Into<String>) -> Result<J, ConvertError> {
        let path = path.into();
        match v {
            Value::Object(m) => Ok(J { m: m.clone(), path }),
            Value::Null => Ok(J {
                m: Map::new(),
                path,
            }),
            _ => invalid(path, "expected an object"),
        }
    }
    fn o(&self) -> O<'_> {
        O {
            m: &self.m,
            path: &self.path,
        }
    }
    fn p(&self, k: &str) -> String {
        self.o().p(k)
    }
    fn has(&self, k: &str) -> bool {
        self.o().get(k).is_some()
    }
    fn s(&self, k: &str) -> Result<Option<String>, ConvertError> {
        self.o().s(k)
    }
    fn req(&self, k: &str) -> Result<String, ConvertError> {
        self.o().req(k)
    }
    fn bool(&self, k: &str) -> Result<bool, ConvertError> {
        self.o().bool(k)
    }
    fn smap(&self, k: &str) -> Result<BTreeMap<String, String>, ConvertError> {
        self.o().smap(k)
    }
    fn only(&self, known: &[&str]) -> Result<(), ConvertError> {
        self.o().only(known)
    }
    fn child(&self, k: &str) -> Result<Option<J>, ConvertError> {
        match self.o().get(k) {
            None => Ok(None),
            Some(v) => J::of(v, self.p(k)).map(Some),
        }
    }
    fn list(&self, k: &str) -> Result<Vec<J>, ConvertError> {
        match self.o().get(k) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| J::of(v, format!("{}[{i}]", self.p(k))))
                .collect(),
            Some(_) => invalid(self.p(k), "expected a list"),
        }
    }
    fn strings(&self, k: &str) -> Result<Vec<String>, ConvertError> {
        match self.o().get(k) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| match v.as_str() {
                    Some(s) => Ok(s.to_string()),
                    None => invalid(format!("{}[{i}]", self.p(k)), "expected a string"),
                })
                .collect(),
            Some(_) => invalid(self.p(k), "expected a list of strings"),
        }
    }
}

/// Metadata of a converted object: name, namespace, and the labels and annotations minus ESO's own.
fn metadata(md: &J, namespace: Option<String>) -> Result<ObjectMeta, ConvertError> {
    let keep = |k: &String| {
        !k.starts_with("external-secrets.io/")
            && !k.contains(".external-secrets.io/")
            && k != "kubectl.kubernetes.io/last-applied-configuration"
    };
    let labels: BTreeMap<String, String> = md
        .smap("labels")?
        .into_iter()
        .filter(|(k, _)| keep(k))
        .collect();
    let annotations: BTreeMap<String, String> = md
        .smap("annotations")?
        .into_iter()
        .filter(|(k, _)| keep(k))
        .collect();
    Ok(ObjectMeta {
        name: Some(md.req("name")?),
        namespace,
        labels: (!labels.is_empty()).then_some(labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..Default::default()
    })
}

/// The object as JSON without nulls and empty lists (fields the API defaults).
fn to_value<T: serde::Serialize>(o: &T) -> Value {
    fn clean(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|_, v| !v.is_null() && !matches!(v, Value::Array(a) if a.is_empty()));
                m.values_mut().for_each(clean);
            }
            Value::Array(a) => a.iter_mut().for_each(clean),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
    clean(&mut v);
    v
}

/// Converts one object. Objects outside `external-secrets.io` are [`Outcome::Ignored`].
pub fn convert(v: &Value, opts: &Options) -> Outcome {
    let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    let Some((group, version)) = api_version.split_once('/') else {
        return Outcome::Ignored;
    };
    if group != ESO_GROUP && !group.ends_with(".external-secrets.io") {
        return Outcome::Ignored;
    }
    let name = v
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let cluster =
        matches!(kind, "ClusterSecretStore" | "ClusterExternalSecret") || group != ESO_GROUP;
    let ns = (!cluster).then(|| {
        v.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(&opts.default_namespace)
            .to_string()
    });
    let from = id(kind, ns.as_deref(), name);
    let refuse = |error| Outcome::Refused {
        from: from.clone(),
        error,
    };
    if group != ESO_GROUP {
        return refuse(ConvertError::Unsupported {
            field: "apiVersion".into(),
            reason: format!(
                "{group} objects (generators and other ESO extensions) have no secretsync equivalent"
            ),
        });
    }
    if matches!(kind, "PushSecret" | "ClusterPushSecret") {
        return refuse(ConvertError::Unsupported {
            field: "kind".into(),
            reason: "secretsync only reads from stores; it has no equivalent of pushing Secrets"
                .into(),
        });
    }
    if !matches!(version, "v1" | "v1beta1") {
        return refuse(ConvertError::Unsupported {
            field: "apiVersion".into(),
            reason: format!(
                "{api_version} is not read; convert supports {ESO_GROUP}/v1 and v1beta1 (upgrade the object with ESO first)"
            ),
        });
    }
    let mut w = Vec::new();
    let res = (|| -> Result<Vec<Converted>, ConvertError> {
        let obj = J::of(v, "")?;
        let md = obj.child("metadata")?.unwrap_or(J {
            m: Map::new(),
            path: "metadata".into(),
        });
        let spec = obj.child("spec")?.unwrap_or(J {
            m: Map::new(),
            path: "spec".into(),
        });
        match kind {
            "ExternalSecret" => {
                let meta = metadata(&md, ns.clone())?;
                let sr = external_secret(&spec, meta, opts, &mut w)?;
                Ok(vec![sr])
            }
            "ClusterExternalSecret" => cluster_external_secret(&md, &spec, opts, &mut w),
            "SecretStore" => {
                let meta = metadata(&md, ns.clone())?;
                let store_ns = ns.clone().unwrap_or_default();
                let (spec, _) = store_spec(&spec, Some(&store_ns), &mut w)?;
                let name = meta.name.clone().unwrap_or_default();
                let o = SecretStore {
                    metadata: meta,
                    spec,
                    status: None,
                };
                Ok(vec![Converted {
                    kind: "SecretStore",
                    namespace: ns.clone(),
                    name,
                    object: to_value(&o),
                    warnings: Vec::new(),
                }])
            }
            "ClusterSecretStore" => {
                let meta = metadata(&md, None)?;
                let (spec, conditions) = store_spec(&spec, None, &mut w)?;
                let name = meta.name.clone().unwrap_or_default();
                let o = ClusterSecretStore {
                    metadata: meta,
                    spec: ClusterSecretStoreSpec {
                        provider: spec.provider,
                        refresh_interval: spec.refresh_interval,
                        rate_limit: spec.rate_limit,
                        conditions,
                    },
                    status: None,
                };
                Ok(vec![Converted {
                    kind: "ClusterSecretStore",
                    namespace: None,
                    name,
                    object: to_value(&o),
                    warnings: Vec::new(),
                }])
            }
            other => unsupported("kind", format!("{other} has no secretsync equivalent")),
        }
    })();
    match res {
        Ok(mut objects) => {
            for o in &mut objects {
                let mut all = w.clone();
                all.append(&mut o.warnings);
                o.warnings = all;
            }
            Outcome::Converted { from, objects }
        }
        Err(error) => refuse(error),
    }
}

/// The go `time.Duration` of ESO as our duration string (the syntax is the same; `µs` is not).
fn duration(field: &str, s: &str) -> Result<String, ConvertError> {
    if s == "0" || crate::api::duration::parse(s).is_ok() {
        Ok(s.to_string())
    } else {
        invalid(
            field,
            "not a duration secretsync reads (e.g. 1h, 15m, 30s, 1h0m0s)",
        )
    }
}

fn store_ref(j: &J) -> Result<(String, StoreKind), ConvertError> {
    j.only(&["name", "kind"])?;
    let kind = match j.s("kind")?.as_deref() {
        None | Some("SecretStore") => StoreKind::SecretStore,
        Some("ClusterSecretStore") => StoreKind::ClusterSecretStore,
        Some(_) => return unsupported(j.p("kind"), "only SecretStore and ClusterSecretStore"),
    };
    Ok((j.req("name")?, kind))
}

/// `sourceRef` of a data item: only the ExternalSecret's own store.
fn source_ref(j: &J, store: &(String, StoreKind)) -> Result<(), ConvertError> {
    j.only(&["storeRef", "generatorRef"])?;
    if j.has("generatorRef") {
        return unsupported(
            j.p("generatorRef"),
            "generators have no secretsync equivalent",
        );
    }
    if let Some(s) = j.child("storeRef")?
        && &store_ref(&s)? != store
    {
        return unsupported(
            s.path.clone(),
            "a SecretRef reads from one store; split the keys of other stores into their own SecretRef",
        );
    }
    Ok(())
}

/// Without `secretStoreRef`: the store every item names in `sourceRef.storeRef`, when they all name
/// the same one (a SecretRef reads from one store).
fn common_source_store(spec: &J) -> Result<(String, StoreKind), ConvertError> {
    let mut found: Option<(String, StoreKind)> = None;
    let mut items = 0;
    for list in ["data", "dataFrom"] {
        for d in spec.list(list)? {
            items += 1;
            let Some(r) = d
                .child("sourceRef")?
                .map(|s| s.child("storeRef"))
                .transpose()?
                .flatten()
            else {
                return invalid(
                    spec.p("secretStoreRef"),
                    format!(
                        "{} has no store (neither secretStoreRef nor sourceRef.storeRef)",
                        d.path
                    ),
                );
            };
            let r = store_ref(&r)?;
            match &found {
                Some(f) if *f != r => {
                    return unsupported(
                        spec.p("secretStoreRef"),
                        "the items read from several stores; a SecretRef reads from one: split them into one SecretRef per store",
                    );
                }
                _ => found = Some(r),
            }
        }
    }
    match found {
        Some(f) if items > 0 => Ok(f),
        _ => invalid(spec.p("secretStoreRef"), "required"),
    }
}

/// `remoteRef` / `extract`: key, property, version; the strategies only at their defaults.
fn remote_ref(j: &J) -> Result<RemoteRefSpec, ConvertError> {
    j.only(&[
        "key",
        "property",
        "version",
        "conversionStrategy",
        "decodingStrategy",
        "metadataPolicy",
        "nullBytePolicy",
    ])?;
    strategies(j)?;
    if let Some(p) = j.s("metadataPolicy")?
        && p != "None"
    {
        return unsupported(
            j.p("metadataPolicy"),
            "secretsync reads secret values only, not provider tags or labels",
        );
    }
    Ok(RemoteRefSpec {
        key: j.req("key")?,
        property: j.s("property")?,
        version: j.s("version")?,
    })
}

fn strategies(j: &J) -> Result<(), ConvertError> {
    if let Some(c) = j.s("conversionStrategy")?
        && c != "Default"
    {
        return unsupported(
            j.p("conversionStrategy"),
            "secretsync has no conversion strategy (values are written as the provider returns them)",
        );
    }
    if let Some(d) = j.s("decodingStrategy")?
        && d != "None"
    {
        return unsupported(
            j.p("decodingStrategy"),
            format!(
                "secretsync has no decoding strategy ({d}); values are written as the provider returns them — decode at the source, or use a template with b64decode for text values"
            ),
        );
    }
    if let Some(n) = j.s("nullBytePolicy")?
        && n != "Ignore"
    {
        return unsupported(j.p("nullBytePolicy"), "secretsync has no null-byte policy");
    }
    Ok(())
}

fn external_secret(
    spec: &J,
    mut meta: ObjectMeta,
    opts: &Options,
    w: &mut Vec<String>,
) -> Result<Converted, ConvertError> {
    let sref_spec = external_secret_spec(
        spec,
        meta.labels.clone().unwrap_or_default(),
        meta.annotations.clone().unwrap_or_default(),
        w,
    )?;
    let name = meta.name.clone().unwrap_or_default();
    if opts.adopt && sref_spec.creation_policy() == CreationPolicy::Orphan {
        w.push("--adopt: ESO writes no ownerReference under creationPolicy Orphan, so its Secret cannot be proved ESO's and will not be adopted (TargetConflict): delete it once the SecretRef is applied, or convert with creationPolicy Owner".into());
    }
    if opts.adopt {
        meta.annotations.get_or_insert_with(BTreeMap::new).insert(
            api::ADOPT_ANNOTATION.to_string(),
            format!("{ESO_GROUP}/ExternalSecret/{name}"),
        );
    }
    let ns = meta.namespace.clone();
    let o = SecretRef {
        metadata: meta,
        spec: sref_spec,
        status: None,
    };
    Ok(Converted {
        kind: "SecretRef",
        namespace: ns,
        name,
        object: to_value(&o),
        warnings: Vec::new(),
    })
}

/// The spec of an ExternalSecret as a SecretRef spec. `labels`/`annotations`: the ExternalSecret's
/// own (ESO copies them onto the Secret when there is no template).
fn external_secret_spec(
    spec: &J,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    w: &mut Vec<String>,
) -> Result<SecretRefSpec, ConvertError> {
    spec.only(&[
        "secretStoreRef",
        "target",
        "refreshPolicy",
        "refreshInterval",
        "data",
        "dataFrom",
    ])?;
    if let Some(p) = spec.s("refreshPolicy")?
        && p != "Periodic"
    {
        return unsupported(
            spec.p("refreshPolicy"),
            format!(
                "refreshPolicy {p} has no secretsync equivalent (secretsync refreshes periodically; refreshInterval 0 fetches once but also rewrites a Secret edited or deleted by hand)"
            ),
        );
    }
    for list in ["data", "dataFrom"] {
        for d in spec.list(list)? {
            if let Some(s) = d.child("sourceRef")?
                && s.has("generatorRef")
            {
                return unsupported(
                    s.p("generatorRef"),
                    "generators have no secretsync equivalent",
                );
            }
        }
    }
    let store = match spec.child("secretStoreRef")? {
        Some(s) => store_ref(&s)?,
        None => common_source_store(spec)?,
    };
    let refresh = match spec.s("refreshInterval")? {
        // ESO's CRD default; written out so a store's refreshInterval does not change it.
        None => "1h".to_string(),
        Some(s) => duration(&spec.p("refreshInterval"), &s)?,
    };
    let mut data = Vec::new();
    for d in spec.list("data")? {
        d.only(&["secretKey", "remoteRef", "sourceRef"])?;
        if let Some(s) = d.child("sourceRef")? {
            source_ref(&s, &store)?;
        }
        let Some(r) = d.child("remoteRef")? else {
            return invalid(d.p("remoteRef"), "required");
        };
        let secret_key = d.req("secretKey")?;
        if !api::validation::is_valid_secret_key(&secret_key) {
            return invalid(d.p("secretKey"), "not a valid Secret key");
        }
        data.push(DataItem {
            secret_key,
            remote_ref: remote_ref(&r)?,
            validate: None,
        });
    }
    let mut data_from = Vec::new();
    let mut find_warned = false;
    for d in spec.list("dataFrom")? {
        d.only(&["extract", "find", "rewrite", "sourceRef"])?;
        if d.has("rewrite") {
            return unsupported(
                d.p("rewrite"),
                "key rewriting has no secretsync equivalent (find names become keys with the leading / dropped and other invalid characters replaced by _)",
            );
        }
        if let Some(s) = d.child("sourceRef")? {
            source_ref(&s, &store)?;
        }
        match (d.child("extract")?, d.child("find")?) {
            (Some(e), None) => data_from.push(DataFrom {
                extract: Some(remote_ref(&e)?),
                find: None,
            }),
            (None, Some(f)) => {
                f.only(&[
                    "path",
                    "name",
                    "tags",
                    "conversionStrategy",
                    "decodingStrategy",
                    "nullBytePolicy",
                ])?;
                strategies(&f)?;
                let name = match f.child("name")? {
                    Some(n) => {
                        n.only(&["regexp"])?;
                        n.s("regexp")?.map(|regexp| NameMatcher { regexp })
                    }
                    None => None,
                };
                if !find_warned {
                    find_warned = true;
                    w.push(
                        "dataFrom.find: Secret key names may differ: secretsync drops a leading '/' of a remote name and replaces other invalid characters with '_' (ESO replaces every invalid character, '/' included, with '_'); check the keys your workloads read".into(),
                    );
                }
                data_from.push(DataFrom {
                    extract: None,
                    find: Some(FindSpec {
                        path: f.s("path")?,
                        tags: f.smap("tags")?,
                        name,
                    }),
                });
            }
            _ => {
                return invalid(d.path.clone(), "exactly one of extract or find must be set");
            }
        }
    }
    let t = spec.child("target")?.unwrap_or(J {
        m: Map::new(),
        path: spec.p("target"),
    });
    let mut target = target(&t, w)?;
    if !t.has("template") && (!labels.is_empty() || !annotations.is_empty()) {
        // ESO copies the ExternalSecret's labels and annotations onto the Secret when there is
        // no template; secretsync writes target.labels / target.annotations.
        let tg = target.get_or_insert_with(Target::default);
        for (what, from, to) in [
            ("label", labels, &mut tg.labels),
            ("annotation", annotations, &mut tg.annotations),
        ] {
            for (k, v) in from {
                if api::is_reserved_key(&k) {
                    w.push(format!("the ExternalSecret's {what} {k:?} (which ESO copies onto the Secret) is not written: the key is reserved for secretsync's ownership marks"));
                } else {
                    to.insert(k, v);
                }
            }
        }
    }
    Ok(SecretRefSpec {
        store_ref: StoreRef {
            name: store.0,
            kind: match store.1 {
                StoreKind::SecretStore => None,
                k => Some(k),
            },
        },
        refresh_interval: Some(refresh),
        target: target.map(Box::new),
        data,
        data_from,
        rotation: None,
        expiry: None,
    })
}

fn deletion_note() -> String {
    "deleting the ExternalSecret deleted its Secret (ownerReference garbage collection, creationPolicy Owner); deleting the SecretRef keeps the Secret (deletionPolicy Retain): delete it by hand, or set target.deletionPolicy: Delete".into()
}

fn reserved(field: &str, m: &BTreeMap<String, String>) -> Result<(), ConvertError> {
    if let Some(k) = m.keys().find(|k| api::is_reserved_key(k)) {
        return invalid(
            format!("{field}.{k}"),
            "the key is reserved for secretsync's ownership marks",
        );
    }
    Ok(())
}

fn target(t: &J, w: &mut Vec<String>) -> Result<Option<Target>, ConvertError> {
    t.only(&[
        "name",
        "creationPolicy",
        "deletionPolicy",
        "template",
        "immutable",
    ])?;
    let creation = match t.s("creationPolicy")?.as_deref() {
        None | Some("Owner") => None,
        Some("Orphan") => Some(CreationPolicy::Orphan),
        Some("Merge") => {
            w.push("creationPolicy Merge: ESO never creates a missing Secret under Merge; secretsync creates it (with only the merged keys)".into());
            Some(CreationPolicy::Merge)
        }
        Some("CreateOrMerge") => Some(CreationPolicy::Merge),
        Some("None") => {
            return unsupported(
                t.p("creationPolicy"),
                "creationPolicy None writes no Secret; a SecretRef always writes one",
            );
        }
        Some(_) => return invalid(t.p("creationPolicy"), "unknown creationPolicy"),
    };
    let deletion = match t.s("deletionPolicy")?.as_deref() {
        None | Some("Retain") => {
            if creation.is_none() {
                w.push(deletion_note());
            }
            None
        }
        Some("Delete") => {
            if creation.is_some() {
                return unsupported(
                    t.p("deletionPolicy"),
                    "deletionPolicy Delete needs creationPolicy Owner in secretsync",
                );
            }
            w.push("deletionPolicy Delete: ESO deletes the Secret as soon as every provider secret is gone; secretsync deletes it only after three authoritative not-found answers in a row over at least ten minutes (never on errors), and with the SecretRef".into());
            Some(DeletionPolicy::Delete)
        }
        Some("Merge") => {
            return unsupported(
                t.p("deletionPolicy"),
                "deletionPolicy Merge (remove the keys, keep the Secret) has no secretsync equivalent",
            );
        }
        Some(_) => return invalid(t.p("deletionPolicy"), "unknown deletionPolicy"),
    };
    let mut out = Target {
        name: t.s("name")?,
        creation_policy: creation,
        deletion_policy: deletion,
        immutable: t.bool("immutable")?.then_some(true),
        ..Default::default()
    };
    if let Some(tpl) = t.child("template")? {
        tpl.only(&[
            "type",
            "engineVersion",
            "metadata",
            "mergePolicy",
            "data",
            "templateFrom",
        ])?;
        if let Some(v) = tpl.s("engineVersion")?
            && v != "v2"
        {
            return unsupported(
                tpl.p("engineVersion"),
                "only template engine v2 is translated",
            );
        }
        if tpl.has("templateFrom") {
            return unsupported(
                tpl.p("templateFrom"),
                "templates from ConfigMaps or Secrets are not translated; inline them in template.data",
            );
        }
        out.type_ = tpl.s("type")?;
        if let Some(m) = tpl.child("metadata")? {
            m.only(&["labels", "annotations"])?;
            out.labels = m.smap("labels")?;
            out.annotations = m.smap("annotations")?;
            reserved(&m.p("labels"), &out.labels)?;
            reserved(&m.p("annotations"), &out.annotations)?;
        }
        let merge = match tpl.s("mergePolicy")?.as_deref() {
            None | Some("Replace") => None,
            Some("Merge") => Some(TemplateMergePolicy::Merge),
            Some(_) => return invalid(tpl.p("mergePolicy"), "unknown mergePolicy"),
        };
        let data = tpl.smap("data")?;
        // ESO keeps every fetched key when a template has no data; a secretsync template writes
        // only its keys (Replace), so no template is written then.
        if !data.is_empty() {
            let mut translated = BTreeMap::new();
            for (k, src) in &data {
                if !api::validation::is_valid_secret_key(k) {
                    return invalid(format!("{}.{k}", tpl.p("data")), "not a valid Secret key");
                }
                let t = gotemplate::translate(src).or_else(|e| {
                    unsupported(format!("{}.{k}", tpl.p("data")), format!("template: {e}"))
                })?;
                translated.insert(k.clone(), t);
            }
            out.template = Some(Template {
                data: translated,
                merge_policy: merge,
                validate: Default::default(),
            });
        }
    }
    Ok((out != Target::default()).then_some(out))
}

fn cluster_external_secret(
    md: &J,
    spec: &J,
    opts: &Options,
    w: &mut Vec<String>,
) -> Result<Vec<Converted>, ConvertError> {
    spec.only(&[
        "externalSecretSpec",
        "externalSecretName",
        "externalSecretMetadata",
        "namespaceSelector",
        "namespaceSelectors",
        "namespaces",
        "refreshTime",
    ])?;
    for sel in ["namespaceSelector", "namespaceSelectors"] {
        if spec.has(sel) {
            return unsupported(
                spec.p(sel),
                "secretsync has no namespace fan-out by label: list the namespaces in spec.namespaces (convert writes one SecretRef per namespace)",
            );
        }
    }
    let namespaces = spec.strings("namespaces")?;
    if namespaces.is_empty() {
        return invalid(
            spec.p("namespaces"),
            "no namespaces to write SecretRefs into",
        );
    }
    if spec.has("refreshTime") {
        w.push("spec.refreshTime (how often ESO re-lists namespaces) is dropped: the namespaces are fixed in the converted SecretRefs".into());
    }
    let name = match spec.s("externalSecretName")? {
        Some(n) => n,
        None => md.req("name")?,
    };
    let es_md = spec.child("externalSecretMetadata")?.unwrap_or(J {
        m: Map::new(),
        path: "spec.externalSecretMetadata".into(),
    });
    es_md.only(&["labels", "annotations"])?;
    let Some(es_spec) = spec.child("externalSecretSpec")? else {
        return invalid(spec.p("externalSecretSpec"), "required");
    };
    let mut out = Vec::new();
    for ns in namespaces {
        let mut m = es_md.clone();
        m.m.insert("name".into(), Value::String(name.clone()));
        let meta = metadata(&m, Some(ns))?;
        out.push(external_secret(&es_spec, meta, opts, w)?);
    }
    // The warnings were collected once per namespace; keep one of each.
    let mut seen = std::collections::BTreeSet::new();
    w.retain(|x| seen.insert(x.clone()));
    Ok(out)
}

/// A Secret key reference of a store (ESO's carry an optional namespace).
fn key_selector(
    j: &J,
    store_ns: Option<&str>,
    w: &mut Vec<String>,
) -> Result<SecretKeySelector, ConvertError> {
    j.only(&["name", "key", "namespace"])?;
    let name = j.req("name")?;
    ref_namespace(j, store_ns, &name, w)?;
    Ok(SecretKeySelector {
        name,
        key: j.req("key")?,
    })
}

fn ref_namespace(
    j: &J,
    store_ns: Option<&str>,
    name: &str,
    w: &mut Vec<String>,
) -> Result<(), ConvertError> {
    let ns = j.s("namespace")?;
    match (store_ns, ns) {
        (Some(s), Some(n)) if s != n => unsupported(
            j.p("namespace"),
            "a SecretStore reads credentials from its own namespace only",
        ),
        (None, Some(n)) => {
            w.push(format!(
                "{}: a ClusterSecretStore reads credentials from the controller's namespace, not {n:?}: copy {name:?} there",
                j.path
            ));
            Ok(())
        }
        (None, None) => {
            w.push(format!(
                "{}: a ClusterSecretStore reads credentials from the controller's namespace: {name:?} must be there",
                j.path
            ));
            Ok(())
        }
        _ => Ok(()),
    }
}

fn service_account(
    j: &J,
    store_ns: Option<&str>,
    w: &mut Vec<String>,
) -> Result<ServiceAccountRef, ConvertError> {
    j.only(&["name", "namespace", "audiences"])?;
    let name = j.req("name")?;
    ref_namespace(j, store_ns, &name, w)?;
    Ok(ServiceAccountRef {
        name,
        audiences: j.strings("audiences")?,
    })
}

/// A store's spec; for a ClusterSecretStore (`store_ns` None) also its conditions.
fn store_spec(
    spec: &J,
    store_ns: Option<&str>,
    w: &mut Vec<String>,
) -> Result<(SecretStoreSpec, Vec<ClusterStoreCondition>), ConvertError> {
    spec.only(&[
        "controller",
        "provider",
        "retrySettings",
        "refreshInterval",
        "conditions",
    ])?;
    if spec.has("controller") {
        w.push("spec.controller (ESO's controller class) is dropped: every secretsync controller serves every store".into());
    }
    if spec.has("retrySettings") {
        w.push("spec.retrySettings is dropped: secretsync retries transient failures with its own backoff".into());
    }
    if spec.has("refreshInterval") {
        w.push("spec.refreshInterval is dropped: in ESO it is how often the store itself is re-validated; in secretsync a store's refreshInterval is the default refresh of its SecretRefs (stores are re-validated on change and periodically)".into());
    }
    let Some(p) = spec.child("provider")? else {
        return invalid(spec.p("provider"), "required");
    };
    let set: Vec<&String> =
        p.m.iter()
            .filter(|(_, v)| !is_empty(v))
            .map(|(k, _)| k)
            .collect();
    if set.len() != 1 {
        return invalid(p.path.clone(), "exactly one provider must be set");
    }
    let provider = match set[0].as_str() {
        "aws" => ProviderSpec {
            aws: Some(aws(
                &p.child("aws")?.unwrap_or_else(|| empty(&p, "aws")),
                store_ns,
                w,
            )?),
            ..Default::default()
        },
        "azurekv" => ProviderSpec {
            azure_key_vault: Some(azure(
                &p.child("azurekv")?.unwrap_or_else(|| empty(&p, "azurekv")),
                store_ns,
                w,
            )?),
            ..Default::default()
        },
        "vault" => ProviderSpec {
            vault: Some(vault(
                &p.child("vault")?.unwrap_or_else(|| empty(&p, "vault")),
                store_ns,
                w,
            )?),
            ..Default::default()
        },
        "fake" => ProviderSpec {
            fake: Some(fake(
                &p.child("fake")?.unwrap_or_else(|| empty(&p, "fake")),
                w,
            )?),
            ..Default::default()
        },
        other => {
            return unsupported(
                p.p(other),
                format!(
                    "provider {other} is not supported by secretsync (aws Secrets Manager, azurekv, vault and fake are converted)"
                ),
            );
        }
    };
    let mut conditions = Vec::new();
    if store_ns.is_none() {
        for c in spec.list("conditions")? {
            c.only(&["namespaceSelector", "namespaces", "namespaceRegexes"])?;
            if c.has("namespaceRegexes") {
                return unsupported(
                    c.p("namespaceRegexes"),
                    "secretsync conditions admit namespaces by label selector or name, not by regular expression",
                );
            }
            let namespace_selector = match c.o().get("namespaceSelector") {
                None => None,
                Some(v) => Some(
                    serde_json::from_value::<LabelSelector>(v.clone())
                        .or_else(|_| invalid(c.p("namespaceSelector"), "not a label selector"))?,
                ),
            };
            conditions.push(ClusterStoreCondition {
                namespace_selector,
                namespaces: c.strings("namespaces")?,
                allowed_key_prefixes: Vec::new(),
            });
        }
        if conditions.is_empty() {
            w.push("no conditions: ESO lets every namespace use this ClusterSecretStore, secretsync none; convert writes a condition admitting every namespace (namespaceSelector: {}) to keep ESO's meaning — narrow it (namespaces, namespaceSelector, allowedKeyPrefixes)".into());
            conditions.push(ClusterStoreCondition {
                namespace_selector: Some(LabelSelector::default()),
                ..Default::default()
            });
        }
    } else if spec.has("conditions") {
        w.push("spec.conditions is dropped: it applies to ClusterSecretStores only".into());
    }
    Ok((
        SecretStoreSpec {
            provider,
            refresh_interval: None,
            rate_limit: None,
        },
        conditions,
    ))
}

fn empty(parent: &J, k: &str) -> J {
    J {
        m: Map::new(),
        path: parent.p(k),
    }
}

fn ambient(store_ns: Option<&str>, what: &str, w: &mut Vec<String>) {
    if store_ns.is_some() {
        w.push(format!(
            "{what}: the controller's own identity serves only ClusterSecretStores and stores in the controller's namespace"
        ));
    }
}

fn aws(a: &J, store_ns: Option<&str>, w: &mut Vec<String>) -> Result<AwsProvider, ConvertError> {
    a.only(&[
        "service",
        "auth",
        "role",
        "region",
        "externalID",
        "secretsManager",
        "sessionTagsPolicy",
    ])?;
    match a.s("service")?.as_deref() {
        Some("SecretsManager") => {}
        None => return invalid(a.p("service"), "required"),
        Some(other) => {
            return unsupported(
                a.p("service"),
                format!("AWS {other} is not supported; secretsync reads AWS Secrets Manager"),
            );
        }
    }
    if let Some(p) = a.s("sessionTagsPolicy")?
        && p != "None"
    {
        return unsupported(a.p("sessionTagsPolicy"), "session tags are not supported");
    }
    if a.has("secretsManager") {
        w.push("spec.provider.aws.secretsManager (PushSecret deletion settings) is dropped: secretsync never writes to AWS".into());
    }
    let role = a.s("role")?;
    let auth = match a.child("auth")? {
        None => {
            ambient(store_ns, "aws without auth", w);
            None
        }
        Some(auth) => {
            auth.only(&["secretRef", "jwt"])?;
            match (auth.child("secretRef")?, auth.child("jwt")?) {
                (Some(s), None) => {
                    s.only(&[
                        "accessKeyIDSecretRef",
                        "secretAccessKeySecretRef",
                        "sessionTokenSecretRef",
                    ])?;
                    let sel =
                        |k: &str, w: &mut Vec<String>| -> Result<SecretKeySelector, ConvertError> {
                            match s.child(k)? {
                                Some(j) => key_selector(&j, store_ns, w),
                                None => invalid(s.p(k), "required"),
                            }
                        };
                    Some(AwsAuth {
                        secret_ref: Some(AwsSecretRef {
                            access_key_id: sel("accessKeyIDSecretRef", w)?,
                            secret_access_key: sel("secretAccessKeySecretRef", w)?,
                            session_token: match s.child("sessionTokenSecretRef")? {
                                Some(j) => Some(key_selector(&j, store_ns, w)?),
                                None => None,
                            },
                        }),
                        jwt: None,
                    })
                }
                (None, Some(j)) => {
                    j.only(&["serviceAccountRef"])?;
                    let Some(sa) = j.child("serviceAccountRef")? else {
                        return invalid(j.p("serviceAccountRef"), "required");
                    };
                    if role.is_none() {
                        return unsupported(
                            a.p("role"),
                            "auth.jwt without role: ESO takes the role from the service account's eks.amazonaws.com/role-arn annotation; secretsync needs it in spec.provider.aws.role",
                        );
                    }
                    Some(AwsAuth {
                        secret_ref: None,
                        jwt: Some(AwsJwtAuth {
                            service_account_ref: service_account(&sa, store_ns, w)?,
                        }),
                    })
                }
                _ => return invalid(auth.path.clone(), "exactly one of secretRef or jwt"),
            }
        }
    };
    Ok(AwsProvider {
        region: a.req("region")?,
        failover_regions: Vec::new(),
        endpoint: None,
        role,
        external_id: a.s("externalID")?,
        auth,
    })
}

fn azure(
    a: &J,
    store_ns: Option<&str>,
    w: &mut Vec<String>,
) -> Result<AzureKeyVaultProvider, ConvertError> {
    a.only(&[
        "authType",
        "vaultUrl",
        "tenantId",
        "environmentType",
        "authSecretRef",
        "serviceAccountRef",
        "identityId",
        "useAzureSDK",
    ])?;
    let vault_url = a.req("vaultUrl")?;
    match a.s("environmentType")?.as_deref() {
        None | Some("PublicCloud") => {}
        Some("ChinaCloud") if vault_url.contains(".vault.azure.cn") => {}
        Some("USGovernmentCloud") if vault_url.contains(".vault.usgovcloudapi.net") => {}
        Some(other) => {
            return unsupported(
                a.p("environmentType"),
                format!(
                    "{other}: secretsync derives the cloud from the vault URL (*.vault.azure.cn, *.vault.usgovcloudapi.net, else public); set authorityHost by hand if needed"
                ),
            );
        }
    }
    let tenant_id = a.s("tenantId")?;
    let auth = match a.s("authType")?.as_deref() {
        None | Some("ServicePrincipal") => {
            return unsupported(
                a.p("authSecretRef.clientId"),
                "ESO reads a service principal's client id from a Secret; secretsync needs it in the store (auth.clientSecret.clientId): write the store by hand (see docs/providers.md)",
            );
        }
        Some("ManagedIdentity") => {
            ambient(store_ns, "azurekv ManagedIdentity", w);
            let id = a.s("identityId")?;
            if id.as_deref().is_some_and(|i| i.starts_with('/')) {
                return unsupported(
                    a.p("identityId"),
                    "a managed identity's resource id: secretsync takes its client id",
                );
            }
            AzureAuth {
                managed_identity: Some(AzureManagedIdentity { client_id: id }),
                ..Default::default()
            }
        }
        Some("WorkloadIdentity") => {
            let sa = match a.child("serviceAccountRef")? {
                Some(sa) => Some(service_account(&sa, store_ns, w)?),
                None => {
                    ambient(
                        store_ns,
                        "azurekv WorkloadIdentity without serviceAccountRef",
                        w,
                    );
                    None
                }
            };
            if a.has("authSecretRef") {
                return unsupported(
                    a.p("authSecretRef"),
                    "ESO reads the workload identity's client id from a Secret; secretsync needs it in the store",
                );
            }
            if sa.is_some() {
                return unsupported(
                    a.p("serviceAccountRef"),
                    "ESO reads the client id (and tenant) from the service account's azure.workload.identity annotations; secretsync needs auth.workloadIdentity.clientId in the store: write it by hand (see docs/providers.md)",
                );
            }
            AzureAuth {
                workload_identity: Some(AzureWorkloadIdentity {
                    client_id: None,
                    service_account_ref: None,
                }),
                ..Default::default()
            }
        }
        Some(other) => return invalid(a.p("authType"), format!("unknown authType {other}")),
    };
    if tenant_id.is_none() {
        w.push("azurekv without tenantId: secretsync uses the controller's AZURE_TENANT_ID".into());
    }
    Ok(AzureKeyVaultProvider {
        vault_url,
        tenant_id,
        authority_host: None,
        ca_bundle: None,
        auth,
    })
}

fn vault(
    v: &J,
    store_ns: Option<&str>,
    w: &mut Vec<String>,
) -> Result<VaultProvider, ConvertError> {
    v.only(&[
        "auth",
        "server",
        "path",
        "version",
        "namespace",
        "caBundle",
        "tls",
        "caProvider",
        "checkAndSet",
    ])?;
    if v.has("checkAndSet") {
        w.push("spec.provider.vault.checkAndSet (PushSecret writes) is dropped: secretsync never writes to Vault".into());
    }
    let Some(path) = v.s("path")? else {
        return unsupported(
            v.p("path"),
            "without path ESO takes the KV mount from each remote key; secretsync needs the mount in spec.provider.vault.path (and keys relative to it)",
        );
    };
    let version = match v.s("version")?.as_deref() {
        None | Some("v2") => Some(VaultKvVersion::V2),
        Some("v1") => Some(VaultKvVersion::V1),
        Some(_) => return invalid(v.p("version"), "v1 or v2"),
    };
    let ca_secret_ref = match v.child("caProvider")? {
        None => None,
        Some(c) => {
            c.only(&["type", "name", "key", "namespace"])?;
            if c.s("type")?.as_deref() != Some("Secret") {
                return unsupported(
                    c.p("type"),
                    "a CA from a ConfigMap is not supported: use a Secret or caBundle",
                );
            }
            let mut sel = c.clone();
            sel.m.remove("type");
            Some(key_selector(&sel, store_ns, w)?)
        }
    };
    let client_cert_secret_ref = match v.child("tls")? {
        None => None,
        Some(t) => {
            t.only(&["certSecretRef", "keySecretRef"])?;
            let (Some(c), Some(k)) = (t.child("certSecretRef")?, t.child("keySecretRef")?) else {
                return invalid(
                    t.path.clone(),
                    "certSecretRef and keySecretRef are both required",
                );
            };
            let c = key_selector(&c, store_ns, w)?;
            let k = key_selector(&k, store_ns, w)?;
            if c.name != k.name || c.key != "tls.crt" || k.key != "tls.key" {
                return unsupported(
                    t.path.clone(),
                    "secretsync reads the client certificate from one kubernetes.io/tls Secret (keys tls.crt and tls.key)",
                );
            }
            Some(SecretName { name: c.name })
        }
    };
    let Some(auth) = v.child("auth")? else {
        return invalid(v.p("auth"), "secretsync needs an auth method");
    };
    auth.only(&["tokenSecretRef", "appRole", "kubernetes", "namespace"])?;
    if auth.has("namespace") {
        return unsupported(
            auth.p("namespace"),
            "a separate auth namespace is not supported (secretsync logs in and reads in spec.provider.vault.namespace)",
        );
    }
    let methods = ["tokenSecretRef", "appRole", "kubernetes"]
        .iter()
        .filter(|m| auth.has(m))
        .count();
    if methods != 1 {
        return invalid(auth.path.clone(), "exactly one auth method must be set");
    }
    let mut out = VaultAuth::default();
    if let Some(t) = auth.child("tokenSecretRef")? {
        out.token = Some(VaultTokenAuth {
            secret_ref: key_selector(&t, store_ns, w)?,
        });
    }
    if let Some(r) = auth.child("appRole")? {
        r.only(&["path", "roleId", "secretRef"])?;
        let Some(s) = r.child("secretRef")? else {
            return invalid(r.p("secretRef"), "required");
        };
        out.app_role = Some(VaultAppRoleAuth {
            role_id: match r.s("roleId")? {
                Some(id) => id,
                None => {
                    return unsupported(
                        r.p("roleRef"),
                        "a role id read from a Secret is not supported: secretsync needs roleId inline",
                    );
                }
            },
            secret_ref: key_selector(&s, store_ns, w)?,
            mount_path: r.s("path")?.filter(|p| p != "approle"),
        });
    }
    if let Some(k) = auth.child("kubernetes")? {
        k.only(&["mountPath", "role", "serviceAccountRef"])?;
        let sa = match k.child("serviceAccountRef")? {
            Some(sa) => Some(service_account(&sa, store_ns, w)?),
            None => {
                ambient(
                    store_ns,
                    "vault kubernetes auth without serviceAccountRef",
                    w,
                );
                None
            }
        };
        out.kubernetes = Some(VaultKubernetesAuth {
            role: k.req("role")?,
            mount_path: k.s("mountPath")?.filter(|p| p != "kubernetes"),
            service_account_ref: sa,
        });
    }
    Ok(VaultProvider {
        server: v.req("server")?,
        path,
        version,
        namespace: v.s("namespace")?,
        ca_bundle: v.s("caBundle")?,
        ca_secret_ref,
        client_cert_secret_ref,
        auth: out,
    })
}

fn fake(f: &J, w: &mut Vec<String>) -> Result<FakeProvider, ConvertError> {
    f.only(&["data", "validationResult"])?;
    let mut data = Vec::new();
    for d in f.list("data")? {
        d.only(&["key", "value", "version"])?;
        data.push(FakeEntry {
            key: d.req("key")?,
            value: d.s("value")?.unwrap_or_default(),
            version: d.s("version")?,
            tags: BTreeMap::new(),
        });
    }
    w.push("fake stores hold their values inline and are refused unless the controller runs with --allow-inline-secrets (demos and tests only)".into());
    Ok(FakeProvider { data })
}
