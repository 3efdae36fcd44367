//! `testkit`: an in-process emulator of the Kubernetes API server for
//! secretsync's end-to-end tests and benchmarks (never shipped in the operator).
//!
//! It speaks the REST protocol kube-rs 5 and kubectl 1.32 use over plain HTTP
//! on 127.0.0.1: discovery, GET/LIST/WATCH/POST/PUT/PATCH/DELETE, server-side
//! apply with managedFields, the status subresource, finalizers,
//! ownerReference garbage collection, CRDs, metadata-only (PartialObjectMetadata)
//! responses, ServiceAccount TokenRequest and TokenReview. Faults (latency,
//! 429, 500, 503, 409 conflicts on writes, dropped connections, cut watches,
//! forced 410, outages) and request counters are controllable from the library
//! ([`Emulator::faults`], [`Emulator::counters`]) and over HTTP under
//! `/_emulator/` (see the `server` module and the README of the crate's binary).
//!
//! Besides the emulator, the helpers secretsync's tests and benchmark share, each written once:
//! [`net`] (free ports), [`tls`] (a throwaway CA and leaf certificates), `http` (feature `http`: a
//! minimal HTTP/1.1 request reader and responder) and [`doubles`] (provider test doubles: moto and
//! its fault proxy, OpenBao, a Vault KV v2 double, an Azure Key Vault + Entra ID double; one
//! feature each). None of them depends on secretsync.
//!
//! # What is checked like the real server
//!
//! The rules below were checked against a real kube-apiserver (v1.36) by `tests/conformance.rs`,
//! which runs the same code on both: status codes, reasons, messages, causes and warnings match.
//!
//! - Custom resources follow their CRD version's `openAPIV3Schema` (`schema.rs`): create, update
//!   and merge/JSON patches prune undeclared fields (not under
//!   `x-kubernetes-preserve-unknown-fields` or `additionalProperties`; `apiVersion`, `kind` and
//!   `metadata` always kept, `metadata` and embedded resources' `metadata` pruned to ObjectMeta)
//!   and `null`s of non-nullable fields, with a `Warning: 299 - "unknown field \"spec.x\""` per
//!   pruned field; `fieldValidation=Strict` refuses them instead (400 `... cannot be handled as a
//!   Kind: strict decoding error: unknown field ...`, 422 on the field `patch` for patches),
//!   `Ignore` prunes silently, other values get 422. Server-side apply refuses undeclared fields
//!   and wrong kinds of value with the real 500 `failed to create typed patch object (/NAME;
//!   GROUP/VERSION, Kind=KIND): .spec.x: field not declared in schema`, and a configuration whose
//!   apiVersion/kind is not the endpoint's with 400 `invalid object type`. The OpenAPI value
//!   validation (type, nullable, required, enum, min/maxLength, pattern, min/maxItems,
//!   min/maxProperties, minimum/maximum/multipleOf, list-type set/map uniqueness, embedded
//!   resources' apiVersion/kind) runs on every write, status included. Strategic merge patch of a
//!   custom resource gets the real 415.
//! - Secret, ConfigMap, ServiceAccount, Namespace, Lease and Event (core and events.k8s.io) bodies
//!   are pruned, warned about and type-checked for apply the same way against their fields.
//! - events.k8s.io/v1 Events: the real create/update validation (note ≤ 1024 bytes, reason/action/
//!   reportingInstance ≤ 128, reportingController a qualified name, required eventTime, type
//!   Normal|Warning, series count ≥ 2, deprecated fields unset, a regarding namespace outside
//!   `default`/`kube-system`, a DNS-subdomain name; on update everything but the series and
//!   metadata immutable), with the core/v1 field names in paths (`message`, `involvedObject`).
//! - MicroTime fields (Event `eventTime`, `series.lastObservedTime`, Lease `acquireTime`/
//!   `renewTime`) need RFC 3339 with exactly 6 fraction digits, as Go's decoder.
//! - Leases: positive `leaseDurationSeconds`, non-negative `leaseTransitions`. TokenRequests:
//!   `expirationSeconds` between 600 and 2^32, `boundObjectRef` to an existing Secret (with a
//!   matching uid), Pod or Node (neither exists here: 404), other kinds 400.
//! - Apply conflicts are worded like the real server (`conflicts with "m" using v1:` lists,
//!   subresource managers named), and a `null` in an applied configuration is a value.
//!
//! # Known differences from a real kube-apiserver
//!
//! - No TLS, authentication, authorization (RBAC), admission (webhooks,
//!   quotas, limit ranges) or audit; every request is allowed.
//! - No OpenAPI documents: `/openapi/v2` and `/openapi/v3` answer 404 (use kubectl with
//!   `--validate=false`).
//! - Schemas: CEL validation rules (`x-kubernetes-validations`) are not evaluated; `default`s are
//!   not applied; `format` (date-time, int64, ...), `allOf`/`anyOf`/`oneOf`/`not` and the CRD's
//!   own `metadata` schema are ignored; `pattern` knows a common subset of RE2 (others are not
//!   checked). Stored objects are not pruned again when a CRD's schema changes (the real server
//!   also prunes on read). With several errors, the real order follows Go map order (and apply's
//!   typed check stops at the first undeclared field of each object): the emulator lists all of
//!   them in key order, so only single errors read the same.
//! - Built-in kinds other than those above (Deployments, StatefulSets, DaemonSets, CRDs,
//!   TokenReviews) are stored as sent, and no built-in body is type-checked on create/update (the
//!   real server answers 400 `cannot unmarshal ...`). Other per-kind validation is not emulated:
//!   core/v1 Events, ObjectMeta (label/annotation syntax, name rules beyond `/` and `%`, except
//!   for events.k8s.io Events), Lease `strategy`/`preferredHolder`, RFC 3339 `Time` fields.
//! - managedFields: Update entries never have the `.` entries the real server writes for maps
//!   and list items it creates, structs the real server treats as atomic (ObjectReference,
//!   `imagePullSecrets`) are granular here, and an applied Secret `stringData` is not kept as owned.
//! - Responses: events.k8s.io Events lack the `deprecatedFirstTimestamp: null`,
//!   `deprecatedLastTimestamp: null`, `deprecatedSource: {}` (and `regarding: {}`) the real server
//!   adds; TokenRequest answers have no managedFields or `boundObjectRef: null`.
//! - Discovery is served in the legacy format only (no aggregated
//!   `apidiscovery.k8s.io/v2`); clients fall back to it.
//!   `as=Table` requests get plain JSON lists/objects. Responses are always
//!   JSON; protobuf request bodies are understood only for Namespace, Secret,
//!   ConfigMap, ServiceAccount, TokenRequest and DeleteOptions (what kubectl's
//!   typed `create` commands send), others get 415.
//! - Only the resources listed in `resources.rs` plus CRDs exist; no pods, services, nodes, ...
//!   and no controllers: deployments never get pods or status, namespaces are finalized by the
//!   emulator itself right away, garbage collection runs inside the delete request, namespaces
//!   get no `default` ServiceAccount nor `kube-root-ca.crt` ConfigMap, and kube-controller-manager's
//!   token controller is missing (the real one deletes a `kubernetes.io/service-account-token`
//!   Secret whose ServiceAccount does not exist and fills in the token of one whose account
//!   exists; the emulator does neither).
//! - CRD versions are not converted: objects are stored as written and only
//!   `apiVersion` is rewritten when read through another served version
//!   (the `None` conversion strategy).
//! - LIST always reads the latest state: `resourceVersion`/`resourceVersionMatch`
//!   on LIST are ignored and `continue` pages are not a consistent snapshot
//!   (continue tokens never expire; `remainingItemCount` is not set).
//! - Watch history is kept per resource type (`watch_history` events each);
//!   a watch from an older resourceVersion gets an ERROR event 410 Expired.
//!   Bookmarks are sent every `bookmark_interval`. When an object stops
//!   matching a watch's label selector the DELETED event carries the new
//!   object state (the real server sends the previous state with the new rv).
//!   Without `timeoutSeconds` a watch lasts an hour.
//! - Server-side apply merges without schemas (the schema only refuses bad configurations):
//!   every JSON object is a granular map, lists are atomic except
//!   `metadata.finalizers` (set), `metadata.ownerReferences` (keyed by uid)
//!   and `containers`/`initContainers`/`ephemeralContainers`/`env`/`volumes`/
//!   `volumeMounts`/`imagePullSecrets` (keyed by `name`); a CRD's `x-kubernetes-list-type`
//!   does not change merging. Ownership is recorded per leaf field in real FieldsV1 format.
//!   Fields emptied by removal leave no empty parent maps behind.
//! - Strategic merge patch is a JSON merge patch plus merge-by-key for the
//!   lists above (and `ports` by `containerPort`), union for finalizers,
//!   `$patch: delete|replace` and `$deleteFromPrimitiveList`; no other
//!   directives and no per-type patch strategies beyond those.
//! - Field selectors accept any dotted path (compared as text); the real
//!   server only allows a per-kind list. Label selector syntax is the usual one.
//! - Deletion: `gracePeriodSeconds` is ignored (objects without finalizers go
//!   at once); `Foreground` propagation behaves like `Background`; `Orphan`
//!   removes the ownerReferences from dependents immediately. Garbage
//!   collection runs synchronously within the delete (dependents go before the
//!   response), and dependents whose owner never existed are not collected.
//!   `dryRun` is ignored (the write happens).
//! - Namespaces: deleting one deletes its content immediately (respecting
//!   finalizers) and the namespace disappears once empty; `default`,
//!   `kube-system`, `kube-public` and `kube-node-lease` exist at start.
//! - Secrets: `stringData` is folded into `data`, `type` defaults to `Opaque`
//!   and is immutable, `data` values must be base64.
//! - `metadata.generation` is kept for apps/v1 workloads, CRDs and custom
//!   resources only. Writes that change nothing do not bump resourceVersion.
//! - TokenRequest tokens are JWT-shaped with a random signature and are only
//!   meaningful to this emulator's TokenReview; bound object refs are checked at issue time
//!   only (deleting the object does not invalidate the token).
//! - Outage mode `refuse` closes the listening socket (connection refused),
//!   `unavailable` answers 503, `drop` closes connections without a response.

mod api;
mod apply;
mod crds;
mod discovery;
pub mod doubles;
#[cfg(feature = "envtest")]
pub mod envtest;
mod error;
mod faults;
mod fields;
#[cfg(feature = "http")]
pub mod http;
mod kinds;
mod kubeconfig;
pub mod net;
mod patch;
mod pattern;
mod protobuf;
mod resources;
mod schema;
mod selectors;
mod server;
mod store;
pub mod tls;
#[cfg(feature = "tls-forward")]
pub mod tls_forward;
mod tokens;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use faults::{Counters, FaultAction, FaultRule, Faults, OutageMode};

/// Options for [`Emulator::start`].
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Events kept per resource type for resuming watches.
    pub watch_history: usize,
    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK.
    pub bookmark_interval: Duration,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            port: 0,
            watch_history: 10_000,
            bookmark_interval: Duration::from_secs(3),
        }
    }
}

struct Inner {
    app: Arc<api::App>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Handle to a running emulator (cheap to clone).
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

impl Emulator {
    /// Bind 127.0.0.1:`opts.port` and serve in the background.
    pub async fn start(opts: EmulatorOptions) -> anyhow::Result<Emulator> {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], opts.port))).await?;
        let addr = listener.local_addr()?;
        let app = Arc::new(api::App {
            store: Mutex::new(store::Store::new(opts.watch_history)),
            faults: Faults::default(),
            counters: faults::CounterStore::default(),
            tokens: Mutex::new(tokens::Tokens::default()),
            bookmark_interval: opts.bookmark_interval.max(Duration::from_millis(10)),
            addr,
        });
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(server::serve(app.clone(), listener, rx));
        Ok(Emulator {
            inner: Arc::new(Inner {
                app,
                shutdown: tx,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.app.addr)
    }

    /// A kubeconfig for this emulator (no auth), with `namespace` as the context's default.
    pub fn kubeconfig_yaml(&self, namespace: Option<&str>) -> String {
        kubeconfig::render(&self.url(), namespace)
    }

    /// Write [`Self::kubeconfig_yaml`] to `path`, creating its directory.
    pub fn write_kubeconfig(&self, path: &Path, namespace: Option<&str>) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, self.kubeconfig_yaml(namespace))?;
        Ok(())
    }

    /// Create (or replace) every CustomResourceDefinition found in the
    /// `*.yaml`/`*.yml`/`*.json` files of `dir` (multi-document). Returns how many.
    pub fn load_crds_from_dir(&self, dir: &Path) -> anyhow::Result<usize> {
        let crds = crds::read_dir(dir)?;
        let n = crds.len();
        for crd in crds {
            self.apply_crd(crd)?;
        }
        Ok(n)
    }

    /// Create or replace one CustomResourceDefinition given as JSON.
    pub fn apply_crd(&self, crd: serde_json::Value) -> anyhow::Result<()> {
        let mut s = self.inner.app.store();
        let rt = s
            .lookup("apiextensions.k8s.io", "customresourcedefinitions")
            .ok_or_else(|| anyhow::anyhow!("CRD resource missing"))?;
        let name = store::md_str(&crd, "name").unwrap_or("").to_string();
        let req = store::Req {
            version: "v1",
            manager: Some("kube-emulator"),
        };
        let res = if s.get(&rt.id(), &name).is_some() {
            let mut body = crd;
            if let Some(md) = body.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                md.remove("resourceVersion");
            }
            s.update(&rt, None, &name, body, None, &req)
        } else {
            s.create(&rt, None, crd, &req)
        };
        res.map(|_| ())
            .map_err(|e| anyhow::anyhow!("CRD {name}: {e}"))
    }

    /// The fault rules, watch cuts and outages this emulator injects.
    pub fn faults(&self) -> &Faults {
        &self.inner.app.faults
    }

    /// A snapshot of the requests served so far, by verb and resource.
    pub fn counters(&self) -> Counters {
        self.inner.app.counters.snapshot()
    }

    /// Set every request counter back to zero.
    pub fn reset_counters(&self) {
        self.inner.app.counters.reset()
    }

    /// Current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.app.store().rv
    }

    /// Stop serving and close all connections.
    pub async fn shutdown(self) {
        let _ = self.inner.shutdown.send(true);
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}
