//! The object store: per-resource ordered maps, one global resourceVersion,
//! bounded per-resource event history for watches, ownerReference GC,
//! finalizers and namespace termination.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::crds;
use crate::error::ApiError;
use crate::fields::{self, Scope};
use crate::kinds;
use crate::resources::{self, ResId, ResourceType};
use crate::schema;

/// One stored object version, with lazily cached serializations.
pub(crate) struct Obj {
    pub v: Value,
    full: OnceLock<Bytes>,
    meta: OnceLock<Bytes>,
}

impl Obj {
    pub fn new(v: Value) -> Arc<Obj> {
        Arc::new(Obj {
            v,
            full: OnceLock::new(),
            meta: OnceLock::new(),
        })
    }
    pub fn full(&self) -> Bytes {
        self.full
            .get_or_init(|| Bytes::from(serde_json::to_vec(&self.v).unwrap_or_default()))
            .clone()
    }
    pub fn meta(&self) -> Bytes {
        self.meta
            .get_or_init(|| {
                let m = json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": self.v.get("metadata").cloned().unwrap_or(json!({})),
                });
                Bytes::from(serde_json::to_vec(&m).unwrap_or_default())
            })
            .clone()
    }
    /// Serialized for a client asking for `api_version` (or metadata only).
    pub fn render(&self, meta_only: bool, api_version: &str) -> Bytes {
        if meta_only {
            return self.meta();
        }
        match self.v.get("apiVersion").and_then(Value::as_str) {
            Some(av) if av != api_version => {
                let mut v = self.v.clone();
                v["apiVersion"] = json!(api_version);
                Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
            }
            _ => self.full(),
        }
    }
    pub fn name(&self) -> &str {
        md_str(&self.v, "name").unwrap_or("")
    }
    pub fn namespace(&self) -> Option<&str> {
        md_str(&self.v, "namespace")
    }
    pub fn uid(&self) -> &str {
        md_str(&self.v, "uid").unwrap_or("")
    }
    pub fn rv(&self) -> &str {
        md_str(&self.v, "resourceVersion").unwrap_or("")
    }
}

pub(crate) fn md_str<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get("metadata")?.get(k)?.as_str()
}

fn md_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.get("metadata").is_some_and(Value::is_object) {
        v["metadata"] = json!({});
    }
    match v.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        None => unreachable!("metadata was just made an object"),
    }
}

fn owner_uids(v: &Value) -> Vec<String> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn has_finalizers(v: &Value) -> bool {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

fn is_deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

pub(crate) fn key(ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change, as retained for watches.
pub(crate) struct Event {
    pub rv: u64,
    pub etype: EventType,
    pub obj: Arc<Obj>,
    pub old: Option<Arc<Obj>>,
}

struct Table {
    objects: BTreeMap<String, Arc<Obj>>,
    history: VecDeque<Arc<Event>>,
    /// Every event with rv > floor is still in `history`.
    floor: u64,
    notify: watch::Sender<u64>,
}

/// Who is writing and through which version.
pub(crate) struct Req<'a> {
    pub version: &'a str,
    /// Field manager for an Update entry; None when managedFields were
    /// already computed (server-side apply).
    pub manager: Option<&'a str>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct DeleteOpts {
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// Why a watch cannot resume.
pub(crate) enum WatchGap {
    /// The resource type disappeared (CRD deleted).
    Gone,
    /// The requested resourceVersion is older than the retained history.
    TooOld { oldest: u64 },
}

pub(crate) struct Store {
    pub rv: u64,
    types: HashMap<ResId, Arc<ResourceType>>,
    tables: HashMap<ResId, Table>,
    uids: HashMap<String, (ResId, String)>,
    owners: HashMap<String, BTreeSet<(ResId, String)>>,
    ns_counts: HashMap<String, usize>,
    history_cap: usize,
    gc_queue: VecDeque<String>,
}

pub(crate) fn ns_rid() -> ResId {
    ResId::new("", "namespaces")
}

pub(crate) fn crd_rid() -> ResId {
    ResId::new("apiextensions.k8s.io", "customresourcedefinitions")
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

impl Store {
    pub fn new(history_cap: usize) -> Self {
        let mut s = Store {
            rv: 1,
            types: HashMap::new(),
            tables: HashMap::new(),
            uids: HashMap::new(),
            owners: HashMap::new(),
            ns_counts: HashMap::new(),
            history_cap: history_cap.max(1),
            gc_queue: VecDeque::new(),
        };
        for rt in resources::builtins() {
            s.register_type(rt);
        }
        if let Some(ns) = s.types.get(&ns_rid()).cloned() {
            for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let body =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
                let req = Req {
                    version: "v1",
                    manager: Some("kube-apiserver"),
                };
                let _ = s.create(&ns, None, body, &req);
            }
        }
        s
    }

    pub fn register_type(&mut self, rt: ResourceType) {
        let id = rt.id();
        let rv = self.rv;
        self.tables.entry(id.clone()).or_insert_with(|| Table {
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            floor: rv,
            notify: watch::channel(rv).0,
        });
        self.types.insert(id, Arc::new(rt));
    }

    pub fn lookup(&self, group: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types.get(&ResId::new(group, plural)).cloned()
    }

    pub fn all_types(&self) -> Vec<Arc<ResourceType>> {
        let mut v: Vec<_> = self.types.values().cloned().collect();
        v.sort_by(|a, b| (&a.group, &a.plural).cmp(&(&b.group, &b.plural)));
        v
    }

    pub fn get(&self, rid: &ResId, key: &str) -> Option<Arc<Obj>> {
        self.tables.get(rid)?.objects.get(key).cloned()
    }

    pub fn count(&self, rid: &ResId) -> usize {
        self.tables.get(rid).map_or(0, |t| t.objects.len())
    }

    /// Up to `limit` objects (0 = all) in key order after `after`, filtered;
    /// the second value is the continue key when more matching objects exist.
    pub fn list(
        &self,
        rid: &ResId,
        ns: Option<&str>,
        after: Option<&str>,
        limit: usize,
        filter: &dyn Fn(&Obj) -> bool,
    ) -> (Vec<Arc<Obj>>, Option<String>) {
        let Some(t) = self.tables.get(rid) else {
            return (vec![], None);
        };
        let prefix = ns.map(|n| format!("{n}/"));
        let start = match (after, &prefix) {
            (Some(a), _) => Bound::Excluded(a.to_string()),
            (None, Some(p)) => Bound::Included(p.clone()),
            (None, None) => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for (k, o) in t.objects.range((start, Bound::Unbounded)) {
            if let Some(p) = &prefix
                && !k.starts_with(p.as_str())
            {
                break;
            }
            if !filter(o) {
                continue;
            }
            if limit > 0 && out.len() == limit {
                let last = out.last().map(|o: &Arc<Obj>| key(o.namespace(), o.name()));
                return (out, last);
            }
            out.push(o.clone());
        }
        (out, None)
    }

    pub fn subscribe(&self, rid: &ResId) -> Option<watch::Receiver<u64>> {
        self.tables.get(rid).map(|t| t.notify.subscribe())
    }

    /// Events of `rid` with rv > `after`, plus the global rv they are complete up to.
    pub fn events_since(
        &self,
        rid: &ResId,
        after: u64,
    ) -> Result<(Vec<Arc<Event>>, u64), WatchGap> {
        let t = self.tables.get(rid).ok_or(WatchGap::Gone)?;
        if after < t.floor {
            return Err(WatchGap::TooOld { oldest: t.floor });
        }
        let i = t.history.partition_point(|e| e.rv <= after);
        Ok((t.history.range(i..).cloned().collect(), self.rv))
    }

    fn push_event(&mut self, rid: &ResId, etype: EventType, obj: Arc<Obj>, old: Option<Arc<Obj>>) {
        let cap = self.history_cap;
        let rv = self.rv;
        if let Some(t) = self.tables.get_mut(rid) {
            t.history.push_back(Arc::new(Event {
                rv,
                etype,
                obj,
                old,
            }));
            while t.history.len() > cap {
                if let Some(e) = t.history.pop_front() {
                    t.floor = e.rv;
                }
            }
            t.notify.send_replace(rv);
        }
    }

    /// Store a new version of an object and emit ADDED/MODIFIED.
    fn commit(&mut self, rid: &ResId, k: String, mut v: Value, old: Option<Arc<Obj>>) -> Arc<Obj> {
        self.rv += 1;
        md_mut(&mut v).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let obj = Obj::new(v);
        let new_owners = owner_uids(&obj.v);
        let old_owners = old.as_ref().map(|o| owner_uids(&o.v)).unwrap_or_default();
        if new_owners != old_owners {
            for u in &old_owners {
                if let Some(s) = self.owners.get_mut(u) {
                    s.remove(&(rid.clone(), k.clone()));
                }
            }
            for u in new_owners {
                self.owners
                    .entry(u)
                    .or_default()
                    .insert((rid.clone(), k.clone()));
            }
        }
        if old.is_none() {
            self.uids
                .insert(obj.uid().to_string(), (rid.clone(), k.clone()));
            if let Some(ns) = obj.namespace() {
                *self.ns_counts.entry(ns.to_string()).or_default() += 1;
            }
        }
        if let Some(t) = self.tables.get_mut(rid) {
            t.objects.insert(k, obj.clone());
        }
        let etype = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.push_event(rid, etype, obj.clone(), old);
        obj
    }

    /// Remove an object for good and emit DELETED (with `last` as content if given).
    fn remove(&mut self, rid: &ResId, k: &str, last: Option<Value>) -> Option<Arc<Obj>> {
        let old = self.tables.get_mut(rid)?.objects.remove(k)?;
        self.rv += 1;
        let mut v = last.unwrap_or_else(|| old.v.clone());
        md_mut(&mut v).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let obj = Obj::new(v);
        self.push_event(rid, EventType::Deleted, obj.clone(), Some(old.clone()));
        self.uids.remove(old.uid());
        for u in owner_uids(&old.v) {
            if let Some(s) = self.owners.get_mut(&u) {
                s.remove(&(rid.clone(), k.to_string()));
                if s.is_empty() {
                    self.owners.remove(&u);
                }
            }
        }
        self.gc_queue.push_back(old.uid().to_string());
        if let Some(ns) = old.namespace() {
            if let Some(c) = self.ns_counts.get_mut(ns) {
                *c = c.saturating_sub(1);
            }
            let ns = ns.to_string();
            self.maybe_finalize_namespace(&ns);
        }
        Some(obj)
    }

    fn check_namespace(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<(), ApiError> {
        match self.get(&ns_rid(), ns) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if is_deleting(&n.v) => Err(ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                crate::error::qualified(&rt.group, &rt.plural)
            ))
            .with_details(json!({"name": name, "kind": rt.plural, "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}))),
            Some(_) => Ok(()),
        }
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        req: &Req,
    ) -> Result<Arc<Obj>, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        check_kind(rt, &obj)?;
        let md = md_mut(&mut obj);
        let name = match md
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(n) => n.to_string(),
            None => match md.get("generateName").and_then(Value::as_str) {
                Some(g) => {
                    let suffix: String = (0..5)
                        .map(|_| NAME_CHARS[rand::random_range(0..NAME_CHARS.len())] as char)
                        .collect();
                    format!("{g}{suffix}")
                }
                None => {
                    return Err(ApiError::invalid(
                        &rt.group,
                        &rt.kind,
                        "",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    ));
                }
            },
        };
        validate_name(rt, &name)?;
        md.insert("name".into(), json!(name));
        if rt.namespaced {
            let Some(ns) = ns else {
                return Err(ApiError::bad_request(
                    "the namespace of the object must be given in the URL",
                ));
            };
            if let Some(bns) = md.get("namespace").and_then(Value::as_str)
                && !bns.is_empty()
                && bns != ns
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            md.insert("namespace".into(), json!(ns));
        } else {
            md.remove("namespace");
        }
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            md.remove(k);
        }
        md.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        md.insert("creationTimestamp".into(), json!(fields::now()));
        if rt.has_generation {
            md.insert("generation".into(), json!(1));
        } else {
            md.remove("generation");
        }
        if let Some(ns) = ns.filter(|_| rt.namespaced) {
            self.check_namespace(rt, ns, &name)?;
        }
        let k = key(ns.filter(|_| rt.namespaced), &name);
        let rid = rt.id();
        if self.get(&rid, &k).is_some() {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        obj["apiVersion"] = json!(rt.api_version(req.version));
        obj["kind"] = json!(rt.kind);
        if rt.has_status
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        self.normalize(rt, &mut obj, None)?;
        if req.manager.is_none() {
            fields::prune_entries(&mut obj);
        }
        if let Some(m) = req.manager {
            let scope = Scope::new(rt.has_status, None);
            fields::record_update(None, &mut obj, m, scope, &rt.api_version(req.version));
        }
        let o = self.commit(&rid, k, obj, None);
        self.run_gc();
        Ok(o)
    }

    /// Kind-specific defaulting/validation and side effects.
    fn normalize(
        &mut self,
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let name = md_str(obj, "name").unwrap_or("").to_string();
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "secrets") => {
                if let Some(Value::Object(sd)) =
                    obj.as_object_mut().and_then(|m| m.remove("stringData"))
                {
                    let data = obj
                        .as_object_mut()
                        .map(|m| m.entry("data").or_insert_with(|| json!({})));
                    if let Some(Value::Object(data)) = data {
                        for (k, v) in sd {
                            let s = v.as_str().unwrap_or_default().to_string();
                            data.insert(
                                k,
                                json!(base64::engine::general_purpose::STANDARD.encode(s)),
                            );
                        }
                    }
                }
                if obj.get("type").is_none_or(Value::is_null) {
                    obj["type"] = json!("Opaque");
                }
                if let Some(data) = obj.get("data").and_then(Value::as_object) {
                    for (k, v) in data {
                        let ok = v.as_str().is_some_and(|s| {
                            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                        });
                        if !ok {
                            return Err(ApiError::invalid(
                                "",
                                "Secret",
                                &name,
                                &format!("data[{k}]"),
                                "must be a base64-encoded string",
                            ));
                        }
                    }
                }
                if let Some(old) = old
                    && old.get("type") != obj.get("type")
                {
                    return Err(ApiError::invalid(
                        "",
                        "Secret",
                        &name,
                        "type",
                        "field is immutable",
                    ));
                }
            }
            ("", "namespaces") => {
                if old.is_none() {
                    obj["spec"] = json!({"finalizers": ["kubernetes"]});
                    obj["status"] = json!({"phase": "Active"});
                }
                let md = md_mut(obj);
                let labels = md.entry("labels").or_insert_with(|| json!({}));
                if !labels.is_object() {
                    *labels = json!({});
                }
                labels["kubernetes.io/metadata.name"] = json!(name);
            }
            ("events.k8s.io", "events") => {
                let errs = kinds::validate_event(obj, old);
                if !errs.is_empty() {
                    return Err(ApiError::invalid_causes("", "Event", &name, &errs));
                }
            }
            ("coordination.k8s.io", "leases") => {
                let errs = kinds::validate_lease(obj);
                if !errs.is_empty() {
                    return Err(ApiError::invalid_causes(&rt.group, &rt.kind, &name, &errs));
                }
            }
            _ if rt.custom => {
                let version = obj
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .and_then(|av| av.rsplit('/').next())
                    .unwrap_or("")
                    .to_string();
                validate_custom(rt, &version, obj)?;
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let crt = crds::resource_type(obj)?;
                if let Some(old) = old {
                    let ort = crds::resource_type(old)?;
                    if ort.namespaced != crt.namespaced {
                        return Err(ApiError::invalid(
                            &rt.group,
                            &rt.kind,
                            &name,
                            "spec.scope",
                            "field is immutable",
                        ));
                    }
                }
                obj["status"] = crds::status(obj, old);
                self.register_type(crt);
            }
            _ => {}
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        body: Value,
        subresource: Option<&str>,
        req: &Req,
    ) -> Result<Arc<Obj>, ApiError> {
        let rid = rt.id();
        let k = key(ns, name);
        let Some(old) = self.get(&rid, &k) else {
            return Err(ApiError::not_found(&rt.group, &rt.plural, name));
        };
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        check_kind(rt, &body)?;
        if let Some(bn) = md_str(&body, "name")
            && bn != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({bn}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(brv) = md_str(&body, "resourceVersion")
            && !brv.is_empty()
            && brv != old.rv()
        {
            return Err(ApiError::stale(&rt.group, &rt.plural, name));
        }
        let scope = Scope::new(rt.has_status, subresource);
        let mut new = match scope {
            Scope::Status => {
                let mut n = old.v.clone();
                match body.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        if let Some(m) = n.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                if req.manager.is_none() {
                    // apply on /status computed managedFields on the whole object
                    if let Some(mf) = body.pointer("/metadata/managedFields") {
                        md_mut(&mut n).insert("managedFields".into(), mf.clone());
                    }
                }
                n
            }
            _ => {
                let mut n = body;
                let omd = old
                    .v
                    .get("metadata")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let md = md_mut(&mut n);
                for f in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                    "namespace",
                    "name",
                ] {
                    match omd.get(f) {
                        Some(v) => md.insert(f.into(), v.clone()),
                        None => md.remove(f),
                    };
                }
                if req.manager.is_some() {
                    match omd.get("managedFields") {
                        Some(v) => md.insert("managedFields".into(), v.clone()),
                        None => md.remove("managedFields"),
                    };
                }
                if scope == Scope::Main
                    && let Some(m) = n.as_object_mut()
                {
                    match old.v.get("status") {
                        Some(s) => m.insert("status".into(), s.clone()),
                        None => m.remove("status"),
                    };
                }
                n["apiVersion"] = json!(rt.api_version(req.version));
                n["kind"] = json!(rt.kind);
                n
            }
        };
        md_mut(&mut new).insert("resourceVersion".into(), json!(old.rv()));
        if scope != Scope::Status {
            self.normalize(rt, &mut new, Some(&old.v))?;
        } else if rt.custom {
            validate_custom(rt, req.version, &new)?;
        }
        if req.manager.is_none() {
            fields::prune_entries(&mut new);
        }
        if rt.has_generation && !spec_equal(&old.v, &new) {
            let g = old
                .v
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            md_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        if let Some(m) = req.manager {
            fields::record_update(
                Some(&old.v),
                &mut new,
                m,
                scope,
                &rt.api_version(req.version),
            );
        }
        if comparable(&new) == comparable(&old.v) {
            return Ok(old);
        }
        if is_deleting(&new) && !has_finalizers(&new) && rid != ns_rid() {
            let o = self.remove(&rid, &k, Some(new));
            self.run_gc();
            return o.ok_or_else(|| ApiError::internal("object vanished"));
        }
        let o = self.commit(&rid, k, new, Some(old));
        if rid == ns_rid() {
            self.maybe_finalize_namespace(name);
        }
        self.run_gc();
        Ok(o)
    }

    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Arc<Obj>, ApiError> {
        let rid = rt.id();
        let k = key(ns, name);
        let Some(old) = self.get(&rid, &k) else {
            return Err(ApiError::not_found(&rt.group, &rt.plural, name));
        };
        // The real server's wording (the registry's precondition check names the kind).
        let precondition_failed = |message: String| {
            ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {message}",
                    rt.kind
                ),
            )
            .with_details(json!({"name": name, "kind": rt.kind}))
        };
        if let Some(u) = &opts.uid
            && u != old.uid()
        {
            return Err(precondition_failed(format!(
                "the UID in the precondition ({u}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                old.uid()
            )));
        }
        if let Some(r) = &opts.resource_version
            && r != old.rv()
        {
            return Err(precondition_failed(format!(
                "the ResourceVersion in the precondition ({r}) does not match the ResourceVersion in record ({}). The object might have been modified",
                old.rv()
            )));
        }
        if opts.propagation.as_deref() == Some("Orphan") {
            self.orphan_dependents(old.uid());
        }
        let out = if rid == ns_rid() {
            self.delete_namespace(name)
        } else {
            if rid == crd_rid()
                && let Ok(crt) = crds::resource_type(&old.v)
            {
                self.unregister(&crt.id());
            }
            self.delete_internal(&rid, &k)
        };
        self.run_gc();
        out.ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    /// Finalizer-aware deletion without preconditions.
    fn delete_internal(&mut self, rid: &ResId, k: &str) -> Option<Arc<Obj>> {
        let old = self.get(rid, k)?;
        if has_finalizers(&old.v) {
            if is_deleting(&old.v) {
                return Some(old);
            }
            let mut v = old.v.clone();
            let md = md_mut(&mut v);
            md.insert("deletionTimestamp".into(), json!(fields::now()));
            md.insert("deletionGracePeriodSeconds".into(), json!(0));
            Some(self.commit(rid, k.to_string(), v, Some(old)))
        } else {
            self.remove(rid, k, None)
        }
    }

    fn delete_namespace(&mut self, name: &str) -> Option<Arc<Obj>> {
        let rid = ns_rid();
        let old = self.get(&rid, name)?;
        let terminating = if is_deleting(&old.v) {
            old
        } else {
            let mut v = old.v.clone();
            let md = md_mut(&mut v);
            md.insert("deletionTimestamp".into(), json!(fields::now()));
            md.insert("deletionGracePeriodSeconds".into(), json!(0));
            v["status"] = json!({"phase": "Terminating"});
            self.commit(&rid, name.to_string(), v, Some(old))
        };
        let prefix = format!("{name}/");
        let rids: Vec<ResId> = self
            .types
            .values()
            .filter(|t| t.namespaced)
            .map(|t| t.id())
            .collect();
        for r in rids {
            let keys: Vec<String> = self
                .tables
                .get(&r)
                .map(|t| {
                    t.objects
                        .range(prefix.clone()..)
                        .take_while(|(k, _)| k.starts_with(&prefix))
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            for k in keys {
                self.delete_internal(&r, &k);
            }
        }
        self.run_gc();
        self.maybe_finalize_namespace(name);
        Some(self.get(&rid, name).unwrap_or(terminating))
    }

    fn maybe_finalize_namespace(&mut self, ns: &str) {
        if self.ns_counts.get(ns).copied().unwrap_or(0) > 0 {
            return;
        }
        let rid = ns_rid();
        if let Some(o) = self.get(&rid, ns)
            && is_deleting(&o.v)
            && !has_finalizers(&o.v)
        {
            self.ns_counts.remove(ns);
            self.remove(&rid, ns, None);
        }
    }

    fn orphan_dependents(&mut self, uid: &str) {
        let Some(deps) = self.owners.remove(uid) else {
            return;
        };
        for (rid, k) in deps {
            self.drop_owner_ref(&rid, &k, uid);
        }
    }

    fn drop_owner_ref(&mut self, rid: &ResId, k: &str, uid: &str) {
        if let Some(dep) = self.get(rid, k) {
            let mut v = dep.v.clone();
            if let Some(refs) = v
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
                if refs.is_empty()
                    && let Some(md) = v.get_mut("metadata").and_then(Value::as_object_mut)
                {
                    md.remove("ownerReferences");
                }
            }
            self.commit(rid, k.to_string(), v, Some(dep));
        }
    }

    /// Background garbage collection of dependents of removed objects.
    fn run_gc(&mut self) {
        while let Some(uid) = self.gc_queue.pop_front() {
            let Some(deps) = self.owners.remove(&uid) else {
                continue;
            };
            for (rid, k) in deps {
                let Some(dep) = self.get(&rid, &k) else {
                    continue;
                };
                let alive = owner_uids(&dep.v)
                    .iter()
                    .any(|u| *u != uid && self.uids.contains_key(u));
                if alive {
                    self.drop_owner_ref(&rid, &k, &uid);
                } else {
                    self.delete_internal(&rid, &k);
                }
            }
        }
    }

    /// Stop serving a CRD's resource: remove its objects and its history.
    fn unregister(&mut self, rid: &ResId) {
        let keys: Vec<String> = self
            .tables
            .get(rid)
            .map(|t| t.objects.keys().cloned().collect())
            .unwrap_or_default();
        for k in keys {
            self.remove(rid, &k, None);
        }
        self.run_gc();
        self.tables.remove(rid);
        self.types.remove(rid);
    }
}

/// The OpenAPI validation of a custom resource against its version's schema.
fn validate_custom(rt: &ResourceType, version: &str, obj: &Value) -> Result<(), ApiError> {
    let Some(schema) = rt.schema(version) else {
        return Ok(());
    };
    let errs = schema::validate(obj, schema);
    if errs.is_empty() {
        return Ok(());
    }
    let name = md_str(obj, "name").unwrap_or("");
    Err(ApiError::invalid_causes(&rt.group, &rt.kind, name, &errs))
}

fn check_kind(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if !k.is_empty() && k != rt.kind => Err(ApiError::bad_request(format!(
            "the kind of the object ({k}) does not match the resource ({})",
            rt.kind
        ))),
        _ => Ok(()),
    }
}

fn validate_name(rt: &ResourceType, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name != "."
        && name != ".."
        && !name.contains(['/', '%']);
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &rt.group,
            &rt.kind,
            name,
            "metadata.name",
            "Invalid value: a valid name may not contain '/' or '%'",
        ))
    }
}

/// Everything but metadata and status equal (generation bump rule).
fn spec_equal(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("metadata");
        m.remove("status");
        m
    };
    strip(a) == strip(b)
}

/// The object without managedFields timestamps, for no-op detection.
fn comparable(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(mf) = c
        .pointer_mut("/metadata/managedFields")
        .and_then(Value::as_array_mut)
    {
        for e in mf.iter_mut() {
            if let Some(m) = e.as_object_mut() {
                m.remove("time");
            }
        }
    }
    c
}
