//! The end-to-end harness: a Kubernetes API, a fresh namespace per test, and the real `secretsync`
//! binary as a subprocess. Assertions only use the Kubernetes API, so they hold on every backend.
//!
//! The API is, in this order: the cluster of `SECRETSYNC_E2E_KUBECONFIG`; the real control plane
//! (etcd + kube-apiserver + kube-controller-manager) started once per test binary from the envtest
//! assets in `KUBEBUILDER_ASSETS` (`make test` prepares them from `../shared/envtest`); otherwise
//! the in-repo emulator, one per test. Tests that need the emulator's fault injection use
//! [`Env::start_emulated`] and say why in one line.
//!
//! On a real API server the operator runs with the Helm chart's RBAC: the chart's ServiceAccount,
//! (Cluster)Roles and bindings rendered by `helm template` for the operator's flags, and a token of
//! that ServiceAccount, so a permission missing from the chart fails the test.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Event, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use secretsync::api::{SecretRef, SecretStore};
use serde_json::json;
use testkit::envtest::ControlPlane;

/// Which Kubernetes API a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The in-repo emulator (one per test).
    Emulator,
    /// A real kube-apiserver from the envtest assets (one per test binary).
    ControlPlane,
    /// The cluster of `SECRETSYNC_E2E_KUBECONFIG`.
    Cluster,
}

/// Tests on a shared API (the control plane of the binary, or an external cluster) run in
/// parallel in their own namespaces; a test that creates cluster-scoped objects
/// (ClusterSecretStores) or runs a cluster-wide operator holds this lock exclusively, so that no
/// other test's operator meets its objects.
static SHARED_API: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

enum ApiGuard {
    Shared(#[allow(dead_code)] tokio::sync::RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] tokio::sync::RwLockWriteGuard<'static, ()>),
    None,
}

/// A Kubernetes API for one test, with its own namespace.
pub struct Env {
    pub client: Client,
    /// An admin kubeconfig (for the test's own CLI runs).
    pub kubeconfig: PathBuf,
    pub ns: String,
    pub dir: tempfile::TempDir,
    pub emulator: Option<testkit::Emulator>,
    pub control_plane: Option<&'static ControlPlane>,
    pub backend: Backend,
    guard: Arc<ApiGuard>,
    /// Operator kubeconfigs by RBAC rendering (release namespace, scope), with the cluster-scoped
    /// RBAC objects each created.
    rbac: Arc<tokio::sync::Mutex<HashMap<String, OperatorIdentity>>>,
}

/// The chart's RBAC for one operator configuration, and the token of its ServiceAccount.
#[derive(Clone, Debug)]
pub struct OperatorIdentity {
    /// A kubeconfig authenticating as the chart's ServiceAccount.
    pub kubeconfig: PathBuf,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub username: String,
    /// ClusterRoles and ClusterRoleBindings created for it (deleted by [`Env::cleanup`]).
    cluster_objects: Vec<(String, String)>,
}

/// A running `secretsync controller` process.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Operator {
    /// Stops the process (SIGKILL) and waits for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit; returns its exit status.
    pub fn terminate(mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The process's peak resident memory so far (`VmHWM` of /proc, KiB); `None` once it exited.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Everything the process logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub async fn client_for(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(cfg).expect("client")
}

impl Env {
    /// Starts (or connects to) the API, installs the CRDs and creates a namespace `ss-<prefix>-<rand>`.
    /// On a shared API the test runs beside others, each in its own namespace.
    pub async fn start(prefix: &str) -> Env {
        Self::start_with(prefix, false, false).await
    }

    /// Like [`Env::start`], for a test that creates cluster-scoped objects or runs a cluster-wide
    /// operator: no other test of the binary runs meanwhile on a shared API.
    pub async fn start_exclusive(prefix: &str) -> Env {
        Self::start_with(prefix, true, false).await
    }

    /// Always the in-repo emulator (for tests that need its fault injection).
    pub async fn start_emulated(prefix: &str) -> Env {
        Self::start_with(prefix, false, true).await
    }

    async fn start_with(prefix: &str, exclusive: bool, emulated: bool) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let external = std::env::var("SECRETSYNC_E2E_KUBECONFIG")
            .ok()
            .filter(|p| !p.is_empty() && !emulated);
        let control_plane = match (&external, emulated) {
            (None, false) => testkit::envtest::shared()
                .await
                .unwrap_or_else(|e| panic!("the envtest control plane did not start: {e:#}")),
            _ => None,
        };
        let (kubeconfig, emulator, backend) = if let Some(path) = external {
            (PathBuf::from(path), None, Backend::Cluster)
        } else if let Some(cp) = control_plane {
            (
                cp.admin_kubeconfig().to_path_buf(),
                None,
                Backend::ControlPlane,
            )
        } else {
            let emu = testkit::Emulator::start(testkit::EmulatorOptions::default())
                .await
                .expect("emulator");
            let path = dir.path().join("kubeconfig");
            emu.write_kubeconfig(&path, None).expect("kubeconfig");
            (path, Some(emu), Backend::Emulator)
        };
        let guard = match (backend, exclusive) {
            (Backend::Emulator, _) => ApiGuard::None,
            (_, true) => ApiGuard::Exclusive(SHARED_API.write().await),
            (_, false) => ApiGuard::Shared(SHARED_API.read().await),
        };
        let client = client_for(&kubeconfig).await;
        install_crds(&client).await;
        let ns = format!("ss-{prefix}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        create_namespace(&client, &ns, true).await;
        Env {
            client,
            kubeconfig,
            ns,
            dir,
            emulator,
            control_plane,
            backend,
            guard: Arc::new(guard),
            rbac: Arc::default(),
        }
    }

    /// A second namespace on the same API as `env`.
    pub async fn start_in(env: &Env, prefix: &str) -> Env {
        let ns = format!("ss-{prefix}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        create_namespace(&env.client, &ns, false).await;
        Env {
            client: env.client.clone(),
            kubeconfig: env.kubeconfig.clone(),
            ns,
            dir: tempfile::tempdir().expect("tempdir"),
            emulator: env.emulator.clone(),
            control_plane: env.control_plane,
            backend: env.backend,
            guard: env.guard.clone(),
            rbac: env.rbac.clone(),
        }
    }

    /// Whether the API is a real API server (RBAC enforced, the chart's RBAC in use).
    pub fn is_real(&self) -> bool {
        self.backend != Backend::Emulator
    }

    /// Starts the operator for this namespace with extra flags.
    pub async fn operator(&self, extra: &[&str]) -> Operator {
        self.operator_env(extra, &[]).await
    }

    /// Starts the operator with extra flags and extra environment variables.
    pub async fn operator_env(&self, extra: &[&str], envs: &[(&str, &str)]) -> Operator {
        self.spawn_operator(Some(&self.ns), extra, envs).await
    }

    /// Starts the operator for this namespace from an image's root filesystem: `/secretsync` of
    /// `root`, in a chroot, as the image's user 65532 (`chroot --userspec`), with its kubeconfig
    /// copied into `root`.
    pub async fn operator_in_image(&self, root: &Path, extra: &[&str]) -> Operator {
        self.spawn(Some(&self.ns), extra, &[], Some(root)).await
    }

    /// Starts the operator watching every namespace (the chart's cluster scope), with extra flags.
    pub async fn operator_cluster_wide(&self, extra: &[&str]) -> Operator {
        assert!(
            !matches!(*self.guard, ApiGuard::Shared(_)),
            "a cluster-wide operator needs Env::start_exclusive on a shared API"
        );
        self.spawn_operator(None, extra, &[]).await
    }

    async fn spawn_operator(
        &self,
        namespace: Option<&str>,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Operator {
        self.spawn(namespace, extra, envs, None).await
    }

    async fn spawn(
        &self,
        namespace: Option<&str>,
        extra: &[&str],
        envs: &[(&str, &str)],
        image_root: Option<&Path>,
    ) -> Operator {
        let log = self
            .dir
            .path()
            .join(format!("operator-{}.log", rand::random::<u32>()));
        let file = std::fs::File::create(&log).expect("log file");
        let flag = |name: &str| {
            extra
                .iter()
                .position(|a| *a == name)
                .and_then(|i| extra.get(i + 1))
                .map(|s| s.to_string())
        };
        let controller_ns = flag("--pod-namespace").unwrap_or_else(|| self.ns.clone());
        let kubeconfig = if self.is_real() {
            self.operator_identity(&controller_ns, namespace)
                .await
                .kubeconfig
        } else {
            self.kubeconfig.clone()
        };
        let mut args = vec!["controller"];
        if let Some(ns) = namespace {
            args.extend_from_slice(&["--namespace", ns]);
        }
        args.extend_from_slice(&[
            "--allow-inline-secrets",
            "--log-format",
            "json",
            "--log-level",
            "info,secretsync=debug",
        ]);
        if !extra.contains(&"--metrics-addr") {
            args.extend_from_slice(&["--metrics-addr", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--health-addr") {
            args.extend_from_slice(&["--health-addr", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--pod-namespace") {
            args.extend_from_slice(&["--pod-namespace", &self.ns]);
        }
        if !extra.contains(&"--pod-name") {
            args.extend_from_slice(&["--pod-name", "secretsync-e2e"]);
        }
        // The chart passes the lease name its Role allows.
        if extra.contains(&"--leader-elect") && !extra.contains(&"--leader-elect-lease-name") {
            args.extend_from_slice(&["--leader-elect-lease-name", LEASE_NAME]);
        }
        args.extend_from_slice(extra);
        let (mut command, kubeconfig) = match image_root {
            None => (
                Command::new(env!("CARGO_BIN_EXE_secretsync")),
                kubeconfig.display().to_string(),
            ),
            Some(root) => {
                let name = format!("kubeconfig-{}", rand::random::<u32>());
                std::fs::copy(&kubeconfig, root.join(&name)).expect("kubeconfig into the image");
                std::fs::set_permissions(
                    root.join(&name),
                    std::os::unix::fs::PermissionsExt::from_mode(0o644),
                )
                .expect("chmod kubeconfig");
                let mut c = Command::new("chroot");
                c.arg("--userspec=65532:65532").arg(root).arg("/secretsync");
                (c, format!("/{name}"))
            }
        };
        let child = command
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .envs(envs.iter().copied())
            .stdout(Stdio::from(file.try_clone().expect("dup")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn secretsync");
        Operator { child, log }
    }

    /// The chart's RBAC for an operator whose own namespace is `controller_ns`, watching
    /// `watch_ns` (chart scope `namespace`) or every namespace (scope `cluster`): rendered with
    /// `helm template` and applied once per test, with a token of the chart's ServiceAccount.
    pub async fn operator_identity(
        &self,
        controller_ns: &str,
        watch_ns: Option<&str>,
    ) -> OperatorIdentity {
        let key = format!("{controller_ns}/{}", watch_ns.unwrap_or("*"));
        let mut cache = self.rbac.lock().await;
        if let Some(id) = cache.get(&key) {
            return id.clone();
        }
        let mut set = vec![
            "rbac.serviceAccountTokens=true".to_string(),
            "leaderElection.enabled=true".to_string(),
        ];
        match watch_ns {
            Some(w) => {
                set.push("scope=namespace".into());
                set.push(format!("watchNamespace={w}"));
            }
            None => set.push("scope=cluster".into()),
        }
        let docs = render_chart(controller_ns, &set, &["serviceaccount.yaml", "rbac.yaml"]);
        let mut sa_name = None;
        let mut cluster_objects = Vec::new();
        let pp = PatchParams::apply("e2e").force();
        for doc in docs {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ns = doc["metadata"]["namespace"]
                .as_str()
                .unwrap_or(controller_ns)
                .to_string();
            let res = match kind.as_str() {
                "ServiceAccount" => {
                    sa_name = Some(name.clone());
                    Api::<ServiceAccount>::namespaced(self.client.clone(), &ns)
                        .patch(&name, &pp, &Patch::Apply(&doc))
                        .await
                        .map(|_| ())
                }
                "Role" => Api::<Role>::namespaced(self.client.clone(), &ns)
                    .patch(&name, &pp, &Patch::Apply(&doc))
                    .await
                    .map(|_| ()),
                "RoleBinding" => Api::<RoleBinding>::namespaced(self.client.clone(), &ns)
                    .patch(&name, &pp, &Patch::Apply(&doc))
                    .await
                    .map(|_| ()),
                "ClusterRole" => {
                    cluster_objects.push((kind.clone(), name.clone()));
                    Api::<ClusterRole>::all(self.client.clone())
                        .patch(&name, &pp, &Patch::Apply(&doc))
                        .await
                        .map(|_| ())
                }
                "ClusterRoleBinding" => {
                    cluster_objects.push((kind.clone(), name.clone()));
                    Api::<ClusterRoleBinding>::all(self.client.clone())
                        .patch(&name, &pp, &Patch::Apply(&doc))
                        .await
                        .map(|_| ())
                }
                other => panic!("unexpected kind {other} in the chart's RBAC"),
            };
            res.unwrap_or_else(|e| panic!("applying the chart's {kind} {ns}/{name}: {e}"));
        }
        let sa_name = sa_name.expect("the chart renders a ServiceAccount");
        let tr = Api::<ServiceAccount>::namespaced(self.client.clone(), controller_ns)
            .create_token_request(
                &sa_name,
                &PostParams::default(),
                &TokenRequest {
                    spec: TokenRequestSpec {
                        audiences: vec![],
                        expiration_seconds: Some(4 * 3600),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await
            .expect("token for the chart's ServiceAccount");
        let token = tr.status.expect("token").token;
        let username = format!("system:serviceaccount:{controller_ns}:{sa_name}");
        let kubeconfig = self.dir.path().join(format!(
            "rbac-{controller_ns}-{}.kubeconfig",
            watch_ns.map_or("cluster", |_| "ns")
        ));
        let yaml = match self.control_plane {
            Some(cp) => cp.kubeconfig_yaml(&username, &token, None),
            None => token_kubeconfig(&self.kubeconfig, &username, &token),
        };
        std::fs::write(&kubeconfig, yaml).expect("operator kubeconfig");
        let id = OperatorIdentity {
            kubeconfig,
            username,
            cluster_objects,
        };
        cache.insert(key, id.clone());
        id
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates a namespaced object given as JSON (panics if it exists).
    pub async fn create<K>(&self, obj: serde_json::Value)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let o: K = serde_json::from_value(obj).expect("object JSON");
        self.api::<K>()
            .create(&PostParams::default(), &o)
            .await
            .expect("create");
    }

    /// Server-side applies a namespaced object given as JSON (field manager `e2e`).
    pub async fn apply<K>(&self, name: &str, obj: serde_json::Value)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        self.try_apply::<K>(name, obj)
            .await
            .unwrap_or_else(|e| panic!("apply {name}: {e}"));
    }

    /// [`Env::apply`] returning the API server's refusal (a real API server refuses fields its
    /// schema lacks and values its CEL rules forbid; the emulator admits everything).
    pub async fn try_apply<K>(&self, name: &str, obj: serde_json::Value) -> Result<(), kube::Error>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let api: Api<K> = self.api();
        api.patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&obj),
        )
        .await
        .map(|_| ())
    }

    /// [`Env::secretref`] returning the API server's refusal.
    pub async fn try_secretref(
        &self,
        name: &str,
        spec: serde_json::Value,
    ) -> Result<(), kube::Error> {
        self.try_apply::<SecretRef>(name, json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretRef", "metadata": {"name": name}, "spec": spec})).await
    }

    /// A `fake` SecretStore serving `data` (key → value).
    pub async fn fake_store(&self, name: &str, data: &[(&str, &str, &str)]) {
        let entries: Vec<_> = data
            .iter()
            .map(|(k, v, ver)| json!({"key": k, "value": v, "version": ver}))
            .collect();
        self.apply::<SecretStore>(
            name,
            json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretStore", "metadata": {"name": name}, "spec": {"provider": {"fake": {"data": entries}}}}),
        )
        .await;
    }

    /// Creates or replaces a SecretRef from its spec.
    pub async fn secretref(&self, name: &str, spec: serde_json::Value) {
        self.apply::<SecretRef>(name, json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretRef", "metadata": {"name": name}, "spec": spec})).await;
    }

    pub async fn secret(&self, name: &str) -> Option<Secret> {
        self.api::<Secret>()
            .get_opt(name)
            .await
            .expect("get secret")
    }

    pub async fn sref(&self, name: &str) -> Option<SecretRef> {
        self.api::<SecretRef>()
            .get_opt(name)
            .await
            .expect("get secretref")
    }

    /// The `Ready` condition of a SecretRef as (status, reason, message).
    pub async fn ready(&self, name: &str) -> Option<(String, String, String)> {
        let s = self.sref(name).await?;
        let c = s
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        Some((c.status, c.reason, c.message))
    }

    /// Waits until `Ready` has the given status and reason; panics with the last state otherwise.
    pub async fn wait_ready(
        &self,
        name: &str,
        status: &str,
        reason: &str,
    ) -> (String, String, String) {
        let mut last = None;
        for _ in 0..300 {
            last = self.ready(name).await;
            if let Some(r) = &last
                && r.0 == status
                && r.1 == reason
            {
                return r.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.dump_logs();
        panic!("SecretRef {name}: Ready never became {status}/{reason}; last: {last:?}");
    }

    /// Waits for a condition on the Secret's decoded data.
    pub async fn wait_secret<F: Fn(&BTreeMap<String, String>) -> bool>(
        &self,
        name: &str,
        pred: F,
    ) -> Secret {
        let mut last = None;
        for _ in 0..300 {
            if let Some(s) = self.secret(name).await {
                if pred(&decoded(&s)) {
                    return s;
                }
                last = Some(decoded(&s));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.dump_logs();
        panic!("Secret {name} never matched; last data: {last:?}");
    }

    /// Events about an object, as (reason, type, note).
    pub async fn events_for(&self, name: &str) -> Vec<(String, String, String)> {
        let evs: Api<k8s_openapi::api::events::v1::Event> = self.api();
        let mut out: Vec<(String, String, String)> = evs
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            // The event recorder aggregates repeats into one Event with a series count.
            .flat_map(|e| {
                let n = e.series.as_ref().map_or(1, |s| s.count.max(1)) as usize;
                let item = (
                    e.reason.unwrap_or_default(),
                    e.type_.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                );
                std::iter::repeat_n(item, n)
            })
            .collect();
        let core: Api<Event> = self.api();
        out.extend(
            core.list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .filter(|e| {
                    e.involved_object.name.as_deref() == Some(name)
                        && e.reporting_component.as_deref() != Some("secretsync")
                })
                .map(|e| {
                    (
                        e.reason.unwrap_or_default(),
                        e.type_.unwrap_or_default(),
                        e.message.unwrap_or_default(),
                    )
                }),
        );
        out
    }

    pub async fn count_events(&self, name: &str, reason: &str) -> usize {
        self.events_for(name)
            .await
            .iter()
            .filter(|e| e.0 == reason)
            .count()
    }

    /// Prints the tail of every operator log of this test (for failures).
    pub fn dump_logs(&self) {
        if let Ok(rd) = std::fs::read_dir(self.dir.path()) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("operator-") {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    if let Ok(dir) = std::env::var("SECRETSYNC_E2E_KEEP_LOGS") {
                        let _ = std::fs::create_dir_all(&dir);
                        let _ =
                            std::fs::write(std::path::Path::new(&dir).join(e.file_name()), &text);
                    }
                    let lines: Vec<&str> = text.lines().collect();
                    eprintln!("--- {} (last 40 lines) ---", e.path().display());
                    for l in &lines[lines.len().saturating_sub(40)..] {
                        eprintln!("{l}");
                    }
                }
            }
        }
    }

    /// Every operator log of this test so far.
    pub fn all_logs(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.path()) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("operator-") {
                    out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }

    /// Leak check of DESIGN §2.5 run by every test that ends with [`Env::cleanup`]: the [`SENTINEL`]
    /// value must not appear in the operator logs (debug level), events or status of the namespace.
    pub async fn assert_no_sentinel_leak(&self) {
        let report = leak_scan(self, &[&self.ns], &self.all_logs(), None, None, &[SENTINEL]).await;
        if !report.hits.is_empty() {
            self.dump_logs();
            panic!("the sentinel value leaked: {:#?}", report.hits);
        }
    }

    /// Runs the sentinel leak check, then deletes the namespace and the cluster-scoped RBAC of the
    /// operators it started (best effort).
    pub async fn cleanup(self) {
        self.assert_no_sentinel_leak().await;
        let nsapi: Api<Namespace> = Api::all(self.client.clone());
        let _ = nsapi.delete(&self.ns, &DeleteParams::default()).await;
        if Arc::strong_count(&self.rbac) == 1 {
            for id in self.rbac.lock().await.values() {
                for (kind, name) in &id.cluster_objects {
                    let dp = DeleteParams::default();
                    let _ = match kind.as_str() {
                        "ClusterRole" => Api::<ClusterRole>::all(self.client.clone())
                            .delete(name, &dp)
                            .await
                            .map(|_| ()),
                        _ => Api::<ClusterRoleBinding>::all(self.client.clone())
                            .delete(name, &dp)
                            .await
                            .map(|_| ()),
                    };
                }
            }
        }
    }
}

/// The Secret's data as text.
pub fn decoded(s: &Secret) -> BTreeMap<String, String> {
    s.data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

/// The Lease the chart's Role lets the operator use (release name `secretsync`).
pub const LEASE_NAME: &str = "secretsync-leader";

async fn create_namespace(client: &Client, ns: &str, labelled: bool) {
    let mut md = json!({"name": ns});
    if labelled {
        md["labels"] = json!({"e2e": "secretsync"});
    }
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": md })).expect("namespace"),
        )
        .await
        .expect("create namespace");
}

/// The helm binary: `$HELM`, else `.tools/bin/helm` (where `scripts/install-helm.sh` puts it), else
/// `helm` on the PATH.
pub fn helm() -> PathBuf {
    if let Some(h) = std::env::var_os("HELM").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/helm");
    if local.is_file() {
        return local;
    }
    PathBuf::from("helm")
}

/// `helm template` of the chart (release `secretsync` in `namespace`) with `--set` values, only the
/// given templates, as JSON documents. `SECRETSYNC_E2E_CHART` names another chart folder.
pub fn render_chart(namespace: &str, set: &[String], templates: &[&str]) -> Vec<serde_json::Value> {
    let chart = std::env::var_os("SECRETSYNC_E2E_CHART")
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/secretsync"));
    let mut cmd = Command::new(helm());
    cmd.args(["template", "secretsync"])
        .arg(&chart)
        .args(["--namespace", namespace]);
    for s in set {
        cmd.args(["--set", s]);
    }
    for t in templates {
        cmd.args(["--show-only", &format!("templates/{t}")]);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "running {} (helm renders the chart's RBAC for tests on a real API server; \
             `make test-deps` installs it into .tools/bin): {e}",
            helm().display()
        )
    });
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut docs = Vec::new();
    for d in serde_yaml_ng::Deserializer::from_str(&text) {
        let v: serde_json::Value = serde::Deserialize::deserialize(d).expect("rendered YAML");
        if v.is_object() {
            docs.push(v);
        }
    }
    docs
}

/// A copy of the kubeconfig at `admin` (its current context's cluster) authenticating with `token`.
fn token_kubeconfig(admin: &Path, user: &str, token: &str) -> String {
    let kc = Kubeconfig::read_from(admin).expect("kubeconfig");
    let ctx_name = kc.current_context.clone().expect("current context");
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.clone())
        .expect("context");
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .and_then(|c| c.cluster.clone())
        .expect("cluster");
    let out = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": cluster}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
        "current-context": "e2e",
        "users": [{"name": user, "user": {"token": token}}],
    });
    serde_yaml_ng::to_string(&out).expect("kubeconfig YAML")
}

/// Applies the CRDs from `crds/` and waits until they are established.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut expected = 0;
    for entry in std::fs::read_dir(&dir).expect("crds dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read crd");
        let crd: CustomResourceDefinition = serde_yaml_ng::from_str(&text).expect("parse crd");
        let name = crd.metadata.name.clone().expect("crd name");
        api.patch(
            &name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("apply crd");
        expected += 1;
    }
    for _ in 0..100 {
        let all = api.list(&ListParams::default()).await.expect("list crds");
        let established = all
            .items
            .iter()
            .filter(|c| c.spec.group == "secretsync.io")
            .filter(|c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    })
            })
            .count();
        if established == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("CRDs not established");
}

/// Polls `f` until it returns Some, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A value that must never leave a Secret: tests store it at the provider and [`leak_scan`] looks for
/// it (and its base64 and hex forms) everywhere else.
pub const SENTINEL: &str = "SENTINEL-3f9c2a71-do-not-log";

/// The operator's `/metrics` text (empty if it cannot be reached within 5 s).
pub async fn scrape_metrics(port: u16) -> String {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("http client");
    for _ in 0..25 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            && let Ok(t) = r.text().await
        {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    String::new()
}

/// Where a sentinel was found.
#[derive(Debug, Default)]
pub struct LeakReport {
    /// Bytes of text scanned.
    pub scanned: usize,
    /// `source: excerpt` per hit.
    pub hits: Vec<String>,
}

fn scan_into(report: &mut LeakReport, source: &str, text: &str, needles: &[String]) {
    report.scanned += text.len();
    for n in needles {
        if let Some(i) = text.find(n.as_str()) {
            let start = text[..i].char_indices().rev().nth(80).map_or(0, |(j, _)| j);
            let end = (i + n.len() + 80).min(text.len());
            let end = (end..=text.len())
                .find(|e| text.is_char_boundary(*e))
                .unwrap_or(text.len());
            report
                .hits
                .push(format!("{source}: …{}…", &text[start..end]));
        }
    }
}

/// Scans everything but the target Secrets for the sentinels (and their base64 / hex forms): the
/// operator's logs (debug level), every event of the namespaces, the status of every SecretRef and
/// store, the `/metrics` output, and the audit file. Returns the hits; callers assert it is empty.
pub async fn leak_scan(
    env: &Env,
    namespaces: &[&str],
    logs: &[String],
    metrics_port: Option<u16>,
    audit: Option<&Path>,
    sentinels: &[&str],
) -> LeakReport {
    use base64::Engine;
    let mut needles = Vec::new();
    for s in sentinels {
        needles.push(s.to_string());
        needles.push(base64::engine::general_purpose::STANDARD.encode(s));
        needles.push(hex::encode(s));
    }
    let mut report = LeakReport::default();
    for (i, l) in logs.iter().enumerate() {
        scan_into(&mut report, &format!("operator log {i}"), l, &needles);
    }
    for ns in namespaces {
        let evs: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client.clone(), ns);
        if let Ok(l) = evs.list(&ListParams::default()).await {
            let text = serde_json::to_string(&l.items).unwrap_or_default();
            scan_into(&mut report, &format!("events in {ns}"), &text, &needles);
        }
        let core: Api<Event> = Api::namespaced(env.client.clone(), ns);
        if let Ok(l) = core.list(&ListParams::default()).await {
            let text = serde_json::to_string(&l.items).unwrap_or_default();
            scan_into(
                &mut report,
                &format!("core events in {ns}"),
                &text,
                &needles,
            );
        }
        let srefs: Api<SecretRef> = Api::namespaced(env.client.clone(), ns);
        if let Ok(l) = srefs.list(&ListParams::default()).await {
            for o in l.items {
                let text = serde_json::to_string(&o.status).unwrap_or_default();
                scan_into(
                    &mut report,
                    &format!("SecretRef status in {ns}"),
                    &text,
                    &needles,
                );
            }
        }
        let stores: Api<SecretStore> = Api::namespaced(env.client.clone(), ns);
        if let Ok(l) = stores.list(&ListParams::default()).await {
            for o in l.items {
                let text = serde_json::to_string(&o.status).unwrap_or_default();
                scan_into(
                    &mut report,
                    &format!("SecretStore status in {ns}"),
                    &text,
                    &needles,
                );
            }
        }
    }
    let css: Api<secretsync::api::ClusterSecretStore> = Api::all(env.client.clone());
    if let Ok(l) = css.list(&ListParams::default()).await {
        for o in l.items {
            let text = serde_json::to_string(&o.status).unwrap_or_default();
            scan_into(&mut report, "ClusterSecretStore status", &text, &needles);
        }
    }
    if let Some(port) = metrics_port {
        let text = scrape_metrics(port).await;
        assert!(
            text.contains("# TYPE"),
            "the metrics endpoint answered nothing to scan"
        );
        scan_into(&mut report, "/metrics", &text, &needles);
    }
    if let Some(path) = audit {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        scan_into(&mut report, "audit file", &text, &needles);
    }
    report
}

/// The audit file's records (JSON lines).
pub fn audit_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Counts requests into one namespace from now on by anyone but the test itself: on the emulator
/// with a latency-0 fault rule as a tripwire, on the envtest control plane from its audit log.
/// `None` against an external cluster.
pub enum Tripwire {
    Emulator {
        emu: testkit::Emulator,
        id: u64,
    },
    Audit {
        cp: &'static ControlPlane,
        mark: u64,
        namespace: String,
    },
}

const TRIPWIRE_BUDGET: u64 = 1 << 40;

impl Tripwire {
    pub fn arm(env: &Env, namespace: &str) -> Option<Tripwire> {
        if let Some(cp) = env.control_plane {
            return Some(Tripwire::Audit {
                cp,
                mark: cp.audit_mark(),
                namespace: namespace.to_string(),
            });
        }
        let emu = env.emulator.clone()?;
        let id = emu.faults().add(
            testkit::FaultRule::new(testkit::FaultAction::Latency { ms: 0 })
                .namespace(namespace)
                .times(TRIPWIRE_BUDGET),
        );
        Some(Tripwire::Emulator { emu, id })
    }

    /// Requests into the namespace since the tripwire was armed (the control plane's own
    /// controllers excluded).
    pub async fn hits(&self) -> u64 {
        match self {
            Tripwire::Emulator { emu, id } => emu
                .faults()
                .rules()
                .into_iter()
                .find(|(i, _)| i == id)
                .and_then(|(_, r)| r.count)
                .map_or(TRIPWIRE_BUDGET, |left| TRIPWIRE_BUDGET - left),
            Tripwire::Audit {
                cp,
                mark,
                namespace,
            } => {
                // Records are written as requests complete.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let hits: Vec<_> = cp
                    .audit_events(*mark)
                    .into_iter()
                    .filter(|e| e.namespace.as_deref() == Some(namespace))
                    // kube-controller-manager fills new namespaces (the `default` ServiceAccount,
                    // the `kube-root-ca.crt` ConfigMap) on its own schedule.
                    .filter(|e| {
                        !(e.user == "system:kube-controller-manager"
                            || e.user.starts_with("system:serviceaccount:kube-system:")
                            || e.user == "system:apiserver")
                    })
                    .collect();
                for e in &hits {
                    eprintln!(
                        "tripwire: {} {} {}/{:?} in {namespace} ({:?})",
                        e.user, e.verb, e.resource, e.name, e.code
                    );
                }
                hits.len() as u64
            }
        }
    }
}

/// Counts the Kubernetes writes made from now on: into the test's namespace by anyone but the test
/// on the envtest control plane (its audit log), by anyone on the emulator (its counters). `None`
/// on an external cluster.
pub enum WriteCounter {
    Emulator {
        emu: testkit::Emulator,
        at: u64,
    },
    Audit {
        cp: &'static ControlPlane,
        mark: u64,
        namespace: String,
    },
}

impl WriteCounter {
    pub fn start(env: &Env) -> Option<WriteCounter> {
        if let Some(cp) = env.control_plane {
            return Some(WriteCounter::Audit {
                cp,
                mark: cp.audit_mark(),
                namespace: env.ns.clone(),
            });
        }
        let emu = env.emulator.clone()?;
        let at = emu.counters().writes;
        Some(WriteCounter::Emulator { emu, at })
    }

    /// Writes since [`WriteCounter::start`], with what they were (empty on the emulator).
    pub async fn writes(&self) -> (u64, Vec<String>) {
        match self {
            WriteCounter::Emulator { emu, at } => (emu.counters().writes - at, Vec::new()),
            WriteCounter::Audit {
                cp,
                mark,
                namespace,
            } => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let w: Vec<String> = cp
                    .audit_events(*mark)
                    .into_iter()
                    .filter(|e| {
                        e.is_write()
                            && e.user != "admin"
                            && e.namespace.as_deref() == Some(namespace)
                    })
                    .map(|e| {
                        format!(
                            "{} {} {}/{} {}",
                            e.user,
                            e.verb,
                            e.resource,
                            e.subresource.unwrap_or_default(),
                            e.name.unwrap_or_default()
                        )
                    })
                    .collect();
                (w.len() as u64, w)
            }
        }
    }
}
