//! A real Kubernetes control plane for tests, started from envtest assets.
//!
//! The envtest convention (controller-runtime's `setup-envtest`): a folder holding the `etcd` and
//! `kube-apiserver` binaries (optionally `kube-controller-manager`), named by `KUBEBUILDER_ASSETS`.
//! [`ControlPlane::start`] runs etcd on a free port with a temporary data directory, and
//! kube-apiserver in front of it with a CA, serving certificate and service-account signing key
//! generated at start: RBAC on, a static admin token in group `system:masters`, TokenRequest and
//! TokenReview working, and an audit log of every request (so tests can count what a client did).
//! The controller-manager, when present, adds namespace deletion, garbage collection and each
//! namespace's `default` ServiceAccount.
//!
//! Shutdown: every process is stopped when the [`ControlPlane`] is dropped, and also when the test
//! process ends any other way (a panic that aborts, a `static` never dropped, SIGKILL): a small
//! reaper process holds the read end of a pipe whose write end only this process holds, and stops
//! the control plane and removes its directory as soon as that pipe closes.
//!
//! [`shared`] starts one control plane per test binary, on first use.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine;
use serde::Deserialize;

use crate::net::try_free_port;
use crate::tls::{TestCa, key_pair_pem};

/// The environment variable naming the assets folder.
pub const ASSETS_ENV: &str = "KUBEBUILDER_ASSETS";

/// The service-account issuer and API audience of the control plane.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The binaries of an assets folder.
#[derive(Debug, Clone)]
pub struct Assets {
    /// `etcd`.
    pub etcd: PathBuf,
    /// `kube-apiserver`.
    pub kube_apiserver: PathBuf,
    /// `kube-controller-manager`, when the folder has it.
    pub kube_controller_manager: Option<PathBuf>,
}

impl Assets {
    /// The folder named by `KUBEBUILDER_ASSETS`: `None` when the variable is unset or empty, an
    /// error naming the missing file when the folder lacks a required binary.
    pub fn from_env() -> Option<anyhow::Result<Assets>> {
        let dir = std::env::var_os(ASSETS_ENV).filter(|d| !d.is_empty())?;
        Some(Assets::in_dir(Path::new(&dir)))
    }

    /// The binaries in `dir`; an error names every required file that is missing.
    pub fn in_dir(dir: &Path) -> anyhow::Result<Assets> {
        let find = |name: &str| {
            let p = dir.join(name);
            p.is_file().then_some(p)
        };
        let missing: Vec<String> = ["etcd", "kube-apiserver"]
            .iter()
            .filter(|n| find(n).is_none())
            .map(|n| dir.join(n).display().to_string())
            .collect();
        if !missing.is_empty() {
            bail!(
                "{ASSETS_ENV}={}: missing {} (an envtest assets folder holds etcd and kube-apiserver, \
                 optionally kube-controller-manager; `make envtest-assets` prepares one)",
                dir.display(),
                missing.join(" and ")
            );
        }
        Ok(Assets {
            etcd: dir.join("etcd"),
            kube_apiserver: dir.join("kube-apiserver"),
            kube_controller_manager: find("kube-controller-manager"),
        })
    }
}

/// One request of the control plane's audit log (stage `ResponseComplete`).
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// The authenticated user, e.g. `system:serviceaccount:ns:secretsync`.
    pub user: String,
    /// get, list, watch, create, update, patch, delete, ...
    pub verb: String,
    /// The resource, e.g. `secrets` (empty for non-resource URLs).
    pub resource: String,
    /// The subresource, e.g. `status`.
    pub subresource: Option<String>,
    /// The object's namespace.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: Option<String>,
    /// The response's HTTP status.
    pub code: Option<u16>,
    /// The request URI.
    pub uri: String,
}

impl AuditEvent {
    /// Whether the request asked to change something.
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

#[derive(Deserialize)]
struct RawAudit {
    stage: String,
    verb: String,
    #[serde(rename = "requestURI", default)]
    uri: String,
    user: RawUser,
    #[serde(rename = "objectRef")]
    object: Option<RawObject>,
    #[serde(rename = "responseStatus")]
    status: Option<RawStatus>,
}

#[derive(Deserialize)]
struct RawUser {
    #[serde(default)]
    username: String,
}

#[derive(Deserialize)]
struct RawObject {
    #[serde(default)]
    resource: String,
    subresource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawStatus {
    code: Option<u16>,
}

/// A running etcd + kube-apiserver (+ kube-controller-manager).
pub struct ControlPlane {
    url: String,
    ca_pem: String,
    admin_token: String,
    dir: PathBuf,
    admin_kubeconfig: PathBuf,
    audit_log: PathBuf,
    processes: Mutex<Vec<(String, Child)>>,
    /// The reaper's stdin: closing it (drop, or this process ending) stops everything.
    lifeline: Mutex<Option<(Child, ChildStdin)>>,
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

const AUDIT_POLICY: &str = "\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  # The control plane's own traffic is not what tests count.
  - level: None
    users: [\"system:kube-controller-manager\", \"system:apiserver\", \"system:kube-scheduler\"]
  - level: None
    userGroups: [\"system:serviceaccounts:kube-system\", \"system:nodes\"]
  - level: None
    nonResourceURLs: [\"/healthz*\", \"/readyz*\", \"/livez*\", \"/version\", \"/openapi*\"]
  - level: Metadata
";

const CONTROLLERS: &str = "*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,\
-node-route-controller,-persistentvolume-binder,-attachdetach,-persistentvolume-expander,-ttl";

impl ControlPlane {
    /// Starts a control plane from `assets` (about 2–5 s on 2 cores). Ports are picked free;
    /// a start that loses a port race is retried.
    pub async fn start(assets: &Assets) -> anyhow::Result<ControlPlane> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once(assets).await {
                Ok(cp) => return Ok(cp),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("control plane did not start")))
    }

    async fn start_once(assets: &Assets) -> anyhow::Result<ControlPlane> {
        let dir = std::env::temp_dir().join(format!(
            "envtest-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut cp = ControlPlane {
            url: String::new(),
            ca_pem: String::new(),
            admin_token: format!("{:032x}", rand::random::<u128>()),
            admin_kubeconfig: dir.join("admin.kubeconfig"),
            audit_log: dir.join("audit.log"),
            dir,
            processes: Mutex::new(Vec::new()),
            lifeline: Mutex::new(None),
        };
        // From here on, dropping `cp` on an error stops what was started.
        cp.launch(assets).await?;
        Ok(cp)
    }

    async fn launch(&mut self, assets: &Assets) -> anyhow::Result<()> {
        let dir = self.dir.clone();
        let path = |n: &str| dir.join(n);
        let ca = TestCa::new("envtest CA")?;
        let serving = ca.server_cert(&[
            "127.0.0.1",
            "localhost",
            "10.0.0.1",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ])?;
        let (sa_key, sa_pub) = key_pair_pem()?;
        std::fs::write(path("ca.crt"), &ca.cert_pem)?;
        std::fs::write(path("apiserver.crt"), &serving.cert_pem)?;
        std::fs::write(path("apiserver.key"), &serving.key_pem)?;
        std::fs::write(path("sa.key"), &sa_key)?;
        std::fs::write(path("sa.pub"), &sa_pub)?;
        // The controller-manager gets its own user, so that the audit log can leave its traffic out.
        let kcm_token = format!("{:032x}", rand::random::<u128>());
        std::fs::write(
            path("tokens.csv"),
            format!(
                "{},admin,admin,\"system:masters\"\n{kcm_token},system:kube-controller-manager,kcm,\"system:masters\"\n",
                self.admin_token
            ),
        )?;

        std::fs::write(path("audit-policy.yaml"), AUDIT_POLICY)?;
        self.ca_pem = ca.cert_pem.clone();

        let (etcd_port, peer_port, api_port) =
            (try_free_port()?, try_free_port()?, try_free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        self.spawn(
            "etcd",
            Command::new(&assets.etcd).args([
                "--data-dir",
                &path("etcd").to_string_lossy(),
                "--listen-client-urls",
                &etcd_url,
                "--advertise-client-urls",
                &etcd_url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &format!("default={peer_url}"),
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ]),
        )?;
        self.wait_for_port("etcd", etcd_port, Duration::from_secs(20))
            .await?;

        self.url = format!("https://127.0.0.1:{api_port}");
        let p = |n: &str| path(n).to_string_lossy().into_owned();
        self.spawn(
            "kube-apiserver",
            Command::new(&assets.kube_apiserver).args([
                "--etcd-servers",
                &etcd_url,
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--secure-port",
                &api_port.to_string(),
                "--cert-dir",
                &p("certs"),
                "--tls-cert-file",
                &p("apiserver.crt"),
                "--tls-private-key-file",
                &p("apiserver.key"),
                "--client-ca-file",
                &p("ca.crt"),
                "--token-auth-file",
                &p("tokens.csv"),
                "--authorization-mode",
                "RBAC",
                "--service-cluster-ip-range",
                "10.0.0.0/24",
                "--service-account-issuer",
                SERVICE_ACCOUNT_ISSUER,
                "--service-account-key-file",
                &p("sa.pub"),
                "--service-account-signing-key-file",
                &p("sa.key"),
                "--api-audiences",
                SERVICE_ACCOUNT_ISSUER,
                "--disable-admission-plugins",
                "ServiceAccount",
                "--allow-privileged=true",
                "--audit-policy-file",
                &p("audit-policy.yaml"),
                "--audit-log-path",
                &p("audit.log"),
                "--audit-log-format",
                "json",
            ]),
        )?;
        std::fs::write(
            &self.admin_kubeconfig,
            self.kubeconfig_yaml("admin", &self.admin_token, None),
        )?;
        self.wait_ready(Duration::from_secs(60)).await?;

        if let Some(kcm) = &assets.kube_controller_manager {
            let kc = p("kcm.kubeconfig");
            std::fs::write(
                &kc,
                self.kubeconfig_yaml("system:kube-controller-manager", &kcm_token, None),
            )?;
            self.spawn(
                "kube-controller-manager",
                Command::new(kcm).args([
                    "--kubeconfig",
                    &kc,
                    "--authentication-kubeconfig",
                    &kc,
                    "--authorization-kubeconfig",
                    &kc,
                    "--leader-elect=false",
                    "--secure-port",
                    "0",
                    "--service-account-private-key-file",
                    &p("sa.key"),
                    "--root-ca-file",
                    &p("ca.crt"),
                    "--use-service-account-credentials=false",
                    "--controllers",
                    CONTROLLERS,
                ]),
            )?;
        }
        self.arm_reaper()?;
        Ok(())
    }

    fn spawn(&self, name: &str, cmd: &mut Command) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C meant for the test runner is the reaper's business.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", cmd.get_program().to_string_lossy()))?;
        self.processes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.to_string(), child));
        Ok(())
    }

    /// An error with the log tail if `name` exited.
    fn check_alive(&self, name: &str) -> anyhow::Result<()> {
        let mut procs = self.processes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, child)) = procs.iter_mut().find(|(n, _)| n == name)
            && let Ok(Some(status)) = child.try_wait()
        {
            bail!(
                "{name} exited ({status}); last lines of {}:\n{}",
                self.dir.join(format!("{name}.log")).display(),
                tail(&self.dir.join(format!("{name}.log")), 20)
            );
        }
        Ok(())
    }

    async fn wait_for_port(&self, name: &str, port: u16, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            self.check_alive(name)?;
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("{name} did not listen on 127.0.0.1:{port} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut last = String::new();
        loop {
            self.check_alive("kube-apiserver")?;
            if let Ok(client) = self.client().await {
                let req = http::Request::get("/readyz").body(Vec::new())?;
                match client.request_text(req).await {
                    Ok(t) if t.trim() == "ok" => return Ok(()),
                    Ok(t) => last = t,
                    Err(e) => last = e.to_string(),
                }
            }
            if start.elapsed() > timeout {
                bail!(
                    "kube-apiserver not ready within {timeout:?} (last answer: {last}); last lines of its log:\n{}",
                    tail(&self.dir.join("kube-apiserver.log"), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts the reaper: `sh` waiting for EOF on its stdin, then stopping every process and
    /// removing the directory. Signals are ignored so that a Ctrl-C to the test run does not skip
    /// the cleanup.
    fn arm_reaper(&self) -> anyhow::Result<()> {
        let pids: Vec<String> = self
            .processes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, c)| c.id().to_string())
            .collect();
        let script = r#"trap '' INT TERM HUP
cat >/dev/null
dir=$1; shift
kill -TERM "$@" 2>/dev/null
i=0
while [ $i -lt 100 ]; do
  alive=0
  for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  sleep 0.1; i=$((i+1))
done
kill -KILL "$@" 2>/dev/null
rm -rf "$dir""#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("envtest-reaper")
            .arg(&self.dir)
            .args(&pids)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the envtest reaper (sh)")?;
        let stdin = child.stdin.take().context("reaper stdin")?;
        *self.lifeline.lock().unwrap_or_else(|e| e.into_inner()) = Some((child, stdin));
        Ok(())
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA certificate (PEM) that signed the API server's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The static admin token (user `admin`, group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// A kubeconfig file for the admin.
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// A kubeconfig for `user` authenticating with `token` (e.g. a ServiceAccount token).
    pub fn kubeconfig_yaml(&self, user: &str, token: &str, namespace: Option<&str>) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let ns = namespace
            .map(|n| format!("    namespace: {n}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: {url}
    certificate-authority-data: {ca}
contexts:
- name: envtest
  context:
    cluster: envtest
    user: {user}
{ns}current-context: envtest
preferences: {{}}
users:
- name: {user}
  user:
    token: {token}
",
            url = self.url
        )
    }

    /// An admin client (bound to the calling runtime).
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml(
            "admin",
            &self.admin_token,
            None,
        ))?;
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?;
        Ok(kube::Client::try_from(cfg)?)
    }

    /// The audit log's current length: pass it to [`ControlPlane::audit_events`] to see only what
    /// happens from now on.
    pub fn audit_mark(&self) -> u64 {
        std::fs::metadata(&self.audit_log).map_or(0, |m| m.len())
    }

    /// Every completed request logged since `mark` (the control plane's own traffic excluded).
    /// The API server writes a request's record as it completes: allow a few hundred milliseconds
    /// after the last request of interest.
    pub fn audit_events(&self, mark: u64) -> Vec<AuditEvent> {
        let Ok(mut f) = std::fs::File::open(&self.audit_log) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(mark)).is_err() {
            return Vec::new();
        }
        BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<RawAudit>(&l).ok())
            .filter(|r| r.stage == "ResponseComplete")
            .map(|r| {
                let o = r.object.unwrap_or(RawObject {
                    resource: String::new(),
                    subresource: None,
                    namespace: None,
                    name: None,
                });
                AuditEvent {
                    user: r.user.username,
                    verb: r.verb,
                    resource: o.resource,
                    subresource: o.subresource,
                    namespace: o.namespace,
                    name: o.name,
                    code: r.status.and_then(|s| s.code),
                    uri: r.uri,
                }
            })
            .collect()
    }

    /// The directory holding the certificates, logs and etcd data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops every process (the reaper does it) and waits up to 15 s for that.
    pub fn stop(&self) {
        let taken = self
            .lifeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let mut procs =
            std::mem::take(&mut *self.processes.lock().unwrap_or_else(|e| e.into_inner()));
        match taken {
            Some((mut reaper, stdin)) => {
                drop(stdin);
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(15) {
                    if let Ok(Some(_)) = reaper.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            None => {
                // Started only partly (no reaper yet): stop what runs.
                for (_, c) in procs.iter_mut() {
                    let _ = c.kill();
                }
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
        for (_, c) in procs.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: tokio::sync::OnceCell<ControlPlane> = tokio::sync::OnceCell::const_new();

/// The test binary's control plane, started on first use from `KUBEBUILDER_ASSETS`; `Ok(None)`
/// when that variable is unset (callers fall back to another API). It lives until the process
/// ends (then the reaper stops it).
pub async fn shared() -> anyhow::Result<Option<&'static ControlPlane>> {
    let Some(assets) = Assets::from_env() else {
        return Ok(None);
    };
    let assets = assets?;
    SHARED
        .get_or_try_init(|| ControlPlane::start(&assets))
        .await
        .map(Some)
}
