//! Restarting workloads when synced data really changes.
//!
//! A rotation queues a restart for each target workload; restarts are debounced per workload (a burst
//! of rotations restarts each workload once, after the burst) and carried out by patching pod-template
//! annotations: `secretsync.io/restarted-at` and `secretsync.io/restart-hmacs` (a JSON map of Secret
//! name → the first 16 hex digits of its data HMAC). A workload that already carries the current HMAC
//! for the Secret is not restarted again. First syncs and operator restarts never queue restarts:
//! only an in-process rotation decision does.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, PodSpec, PodTemplateSpec};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::api::WorkloadKind;

/// Annotation with the time of the last restart secretsync triggered.
pub const RESTARTED_AT: &str = "secretsync.io/restarted-at";
/// Annotation with the data HMACs a workload was last restarted for.
pub const RESTART_HMACS: &str = "secretsync.io/restart-hmacs";

/// Whether a pod spec uses the Secret `name` (env, envFrom, volume or projected volume).
pub fn uses_secret(spec: &PodSpec, name: &str) -> bool {
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        if c.env.iter().flatten().any(|e| {
            e.value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .is_some_and(|r| r.name == name)
        }) {
            return true;
        }
        if c.env_from
            .iter()
            .flatten()
            .any(|e| e.secret_ref.as_ref().is_some_and(|r| r.name == name))
        {
            return true;
        }
    }
    spec.volumes.iter().flatten().any(|v| {
        v.secret
            .as_ref()
            .is_some_and(|s| s.secret_name.as_deref() == Some(name))
            || v.projected.as_ref().is_some_and(|p| {
                p.sources
                    .iter()
                    .flatten()
                    .any(|s| s.secret.as_ref().is_some_and(|s| s.name == name))
            })
    })
}

/// Whether the template already carries `hmac` for `secret`.
pub fn already_restarted_for(template: &PodTemplateSpec, secret: &str, hmac: &str) -> bool {
    current_hmacs(template).get(secret).map(String::as_str) == Some(short(hmac))
}

fn short(hmac: &str) -> &str {
    &hmac[..hmac.len().min(16)]
}

fn current_hmacs(template: &PodTemplateSpec) -> BTreeMap<String, String> {
    template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(RESTART_HMACS))
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

/// One workload in a namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    /// Namespace.
    pub namespace: String,
    /// Kind.
    pub kind: WorkloadKind,
    /// Name.
    pub name: String,
}

#[derive(Clone, Debug)]
struct Pending {
    due: Instant,
    /// Secret name → data HMAC to record.
    secrets: BTreeMap<String, String>,
    /// The SecretRefs that asked for it (for events).
    requested_by: Vec<ObjectReference>,
}

/// The debounced restart queue.
pub struct Restarter {
    client: Client,
    debounce: Duration,
    pending: Mutex<HashMap<WorkloadKey, Pending>>,
    wake: tokio::sync::Notify,
}

fn kind_str(k: WorkloadKind) -> &'static str {
    match k {
        WorkloadKind::Deployment => "Deployment",
        WorkloadKind::StatefulSet => "StatefulSet",
        WorkloadKind::DaemonSet => "DaemonSet",
    }
}

impl Restarter {
    /// A queue restarting workloads `debounce` after the last rotation that concerns them.
    pub fn new(client: Client, debounce: Duration) -> Self {
        Self {
            client,
            debounce,
            pending: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The workloads of `namespace` whose pod templates use the Secret `secret`.
    pub async fn discover(
        &self,
        namespace: &str,
        secret: &str,
    ) -> Result<Vec<(WorkloadKind, String)>, kube::Error> {
        let mut out = Vec::new();
        let lp = ListParams::default();
        let deps: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        for d in deps.list(&lp).await? {
            if d.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .is_some_and(|p| uses_secret(p, secret))
            {
                out.push((WorkloadKind::Deployment, d.name_any()));
            }
        }
        let sts: Api<StatefulSet> = Api::namespaced(self.client.clone(), namespace);
        for s in sts.list(&lp).await? {
            if s.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .is_some_and(|p| uses_secret(p, secret))
            {
                out.push((WorkloadKind::StatefulSet, s.name_any()));
            }
        }
        let dss: Api<DaemonSet> = Api::namespaced(self.client.clone(), namespace);
        for d in dss.list(&lp).await? {
            if d.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .is_some_and(|p| uses_secret(p, secret))
            {
                out.push((WorkloadKind::DaemonSet, d.name_any()));
            }
        }
        Ok(out)
    }

    /// Queues restarts of `workloads` for a rotation of `secret` to `hmac`.
    pub fn schedule(
        &self,
        namespace: &str,
        workloads: &[(WorkloadKind, String)],
        secret: &str,
        hmac: &str,
        sref: ObjectReference,
    ) {
        let due = Instant::now() + self.debounce;
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (kind, name) in workloads {
            let key = WorkloadKey {
                namespace: namespace.to_string(),
                kind: *kind,
                name: name.clone(),
            };
            let entry = p.entry(key).or_insert_with(|| Pending {
                due,
                secrets: BTreeMap::new(),
                requested_by: Vec::new(),
            });
            entry.due = due;
            entry.secrets.insert(secret.to_string(), hmac.to_string());
            if !entry.requested_by.contains(&sref) {
                entry.requested_by.push(sref.clone());
            }
        }
        drop(p);
        self.wake.notify_one();
    }

    /// Workloads waiting for their restart.
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Carries out due restarts until `shutdown`; `may_write` gates every patch (leader election).
    pub async fn run(
        self: Arc<Self>,
        ctx: Arc<super::Context>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let next = {
                let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                p.values().map(|x| x.due).min()
            };
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.wake.notified() => continue,
                _ = sleep => {}
            }
            let now = Instant::now();
            let due: Vec<(WorkloadKey, Pending)> = {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                let keys: Vec<WorkloadKey> = p
                    .iter()
                    .filter(|(_, v)| v.due <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                keys.into_iter()
                    .filter_map(|k| p.remove(&k).map(|v| (k, v)))
                    .collect()
            };
            for (key, pending) in due {
                if !ctx.may_write() {
                    debug!(workload = %key.name, "not the leader; dropping a restart");
                    continue;
                }
                match self.restart(&key, &pending).await {
                    Ok(true) => {
                        ctx.metrics.restarted(kind_str(key.kind));
                        info!(namespace = %key.namespace, kind = kind_str(key.kind), workload = %key.name, "restarted workload after rotation");
                        let secrets: Vec<&str> =
                            pending.secrets.keys().map(String::as_str).collect();
                        let note = format!(
                            "restarted {} {:?} because Secret(s) {} rotated",
                            kind_str(key.kind),
                            key.name,
                            secrets.join(", ")
                        );
                        let wref = ObjectReference {
                            api_version: Some("apps/v1".into()),
                            kind: Some(kind_str(key.kind).into()),
                            name: Some(key.name.clone()),
                            namespace: Some(key.namespace.clone()),
                            ..Default::default()
                        };
                        let ev = Event {
                            type_: EventType::Normal,
                            reason: "RestartTriggered".into(),
                            note: Some(note),
                            action: "Restart".into(),
                            secondary: None,
                        };
                        let recorder = ctx.recorder();
                        super::events::publish(&recorder, &ctx.metrics, &ev, &wref).await;
                        for sref in &pending.requested_by {
                            super::events::publish(&recorder, &ctx.metrics, &ev, sref).await;
                        }
                    }
                    Ok(false) => {
                        debug!(workload = %key.name, "workload already carries the current data; not restarted")
                    }
                    Err(e) => {
                        warn!(workload = %key.name, error = %super::error::kube_error_summary(&e), "restart failed")
                    }
                }
            }
        }
    }

    /// Patches the pod template; `Ok(false)` when the workload is gone or already up to date.
    async fn restart(&self, key: &WorkloadKey, pending: &Pending) -> Result<bool, kube::Error> {
        match key.kind {
            WorkloadKind::Deployment => {
                self.restart_typed::<Deployment>(key, pending, |d| {
                    d.spec.as_ref().map(|s| &s.template)
                })
                .await
            }
            WorkloadKind::StatefulSet => {
                self.restart_typed::<StatefulSet>(key, pending, |d| {
                    d.spec.as_ref().map(|s| &s.template)
                })
                .await
            }
            WorkloadKind::DaemonSet => {
                self.restart_typed::<DaemonSet>(key, pending, |d| {
                    d.spec.as_ref().map(|s| &s.template)
                })
                .await
            }
        }
    }

    async fn restart_typed<K>(
        &self,
        key: &WorkloadKey,
        pending: &Pending,
        template: impl Fn(&K) -> Option<&PodTemplateSpec>,
    ) -> Result<bool, kube::Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &key.namespace);
        let Some(obj) = api.get_opt(&key.name).await? else {
            return Ok(false);
        };
        let Some(tpl) = template(&obj) else {
            return Ok(false);
        };
        if pending
            .secrets
            .iter()
            .all(|(s, h)| already_restarted_for(tpl, s, h))
        {
            return Ok(false);
        }
        let mut hmacs = current_hmacs(tpl);
        for (s, h) in &pending.secrets {
            hmacs.insert(s.clone(), short(h).to_string());
        }
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {
            RESTARTED_AT: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            RESTART_HMACS: serde_json::to_string(&hmacs).unwrap_or_default(),
        }}}}});
        api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, EnvFromSource, EnvVar, EnvVarSource, ProjectedVolumeSource, SecretEnvSource,
        SecretKeySelector, SecretProjection, SecretVolumeSource, Volume, VolumeProjection,
    };
    use kube::api::ObjectMeta;

    fn pod(containers: Vec<Container>, volumes: Vec<Volume>) -> PodSpec {
        PodSpec {
            containers,
            volumes: Some(volumes),
            ..Default::default()
        }
    }

    #[test]
    fn finds_every_way_a_pod_uses_a_secret() {
        let env = Container {
            name: "a".into(),
            env: Some(vec![EnvVar {
                name: "X".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "db".into(),
                        key: "pw".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(uses_secret(&pod(vec![env], vec![]), "db"));
        let env_from = Container {
            name: "a".into(),
            env_from: Some(vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "db".into(),
                    optional: None,
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(uses_secret(&pod(vec![env_from], vec![]), "db"));
        let vol = Volume {
            name: "v".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("db".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(uses_secret(&pod(vec![], vec![vol]), "db"));
        let proj = Volume {
            name: "p".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    secret: Some(SecretProjection {
                        name: "db".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(uses_secret(&pod(vec![], vec![proj.clone()]), "db"));
        assert!(!uses_secret(&pod(vec![], vec![proj]), "other"));
        assert!(!uses_secret(
            &pod(
                vec![Container {
                    name: "plain".into(),
                    ..Default::default()
                }],
                vec![]
            ),
            "db"
        ));
    }

    #[test]
    fn recognises_templates_already_restarted() {
        let mut tpl = PodTemplateSpec::default();
        assert!(!already_restarted_for(&tpl, "db", "0123456789abcdef0000"));
        tpl.metadata = Some(ObjectMeta {
            annotations: Some(
                [(
                    RESTART_HMACS.to_string(),
                    r#"{"db":"0123456789abcdef"}"#.to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        });
        assert!(already_restarted_for(&tpl, "db", "0123456789abcdef0000"));
        assert!(!already_restarted_for(&tpl, "db", "ffff456789abcdef0000"));
        assert!(!already_restarted_for(
            &tpl,
            "cache",
            "0123456789abcdef0000"
        ));
    }
}
