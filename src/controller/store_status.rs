//! The `Ready` condition of SecretStores and ClusterSecretStores: credentials valid and provider
//! reachable, checked when a store changes and every few minutes. Written only when it changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::debug;

use super::Context;
use super::status as cond;
use crate::api::{self, ClusterSecretStore, SecretStore, SecretStoreStatus};

/// How often every store is re-validated.
pub const PERIOD: Duration = Duration::from_secs(300);
/// How often a store with SecretRefs waiting out its failures is probed (recovery within seconds,
/// without every SecretRef retrying on its own backoff).
pub const PROBE: Duration = Duration::from_secs(10);

fn next_status(
    old: Option<&SecretStoreStatus>,
    generation: Option<i64>,
    res: &Result<(), super::stores::StoreError>,
) -> SecretStoreStatus {
    let mut st = old.cloned().unwrap_or_default();
    match res {
        Ok(()) => cond::set_condition(
            &mut st.conditions,
            cond::READY,
            true,
            "Valid",
            "credentials valid and provider reachable",
            generation,
            Utc::now(),
        ),
        Err(e) => cond::set_condition(
            &mut st.conditions,
            cond::READY,
            false,
            e.reason(),
            &e.to_string(),
            generation,
            Utc::now(),
        ),
    }
    st.observed_generation = generation;
    st
}

/// Validates stores on change (polled from the reflectors every 2 s) and every [`PERIOD`].
pub async fn run(
    ctx: Arc<Context>,
    stores: Store<SecretStore>,
    cluster: Store<ClusterSecretStore>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut checked: HashMap<String, (Option<i64>, tokio::time::Instant)> = HashMap::new();
    loop {
        if ctx.may_write() {
            let failing = ctx.failing_stores();
            for s in stores.state() {
                let key = format!(
                    "SecretStore/{}/{}",
                    s.namespace().unwrap_or_default(),
                    s.name_any()
                );
                if !due(
                    &checked,
                    &key,
                    s.metadata.generation,
                    failing.contains(&key),
                ) {
                    continue;
                }
                let res = ctx.stores.check_store(&s).await;
                if res.is_ok() {
                    ctx.wake_store(&key);
                }
                let st = next_status(s.status.as_ref(), s.metadata.generation, &res);
                if Some(&st) != s.status.as_ref() {
                    write_status(
                        Api::<SecretStore>::namespaced(
                            ctx.client.clone(),
                            &s.namespace().unwrap_or_default(),
                        ),
                        &s.name_any(),
                        "SecretStore",
                        &st,
                    )
                    .await;
                }
                checked.insert(key, (s.metadata.generation, tokio::time::Instant::now()));
            }
            for s in cluster.state() {
                let key = format!("ClusterSecretStore/{}", s.name_any());
                if !due(
                    &checked,
                    &key,
                    s.metadata.generation,
                    failing.contains(&key),
                ) {
                    continue;
                }
                let res = ctx.stores.check_cluster_store(&s).await;
                if res.is_ok() {
                    ctx.wake_store(&key);
                }
                let st = next_status(s.status.as_ref(), s.metadata.generation, &res);
                if Some(&st) != s.status.as_ref() {
                    write_status(
                        Api::<ClusterSecretStore>::all(ctx.client.clone()),
                        &s.name_any(),
                        "ClusterSecretStore",
                        &st,
                    )
                    .await;
                }
                checked.insert(key, (s.metadata.generation, tokio::time::Instant::now()));
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Applies a store's status (server-side apply on the status subresource); failures are retried on the
/// next check.
async fn write_status<K>(api: Api<K>, name: &str, kind: &str, st: &SecretStoreStatus)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"apiVersion": "secretsync.io/v1alpha1", "kind": kind, "status": st});
    if let Err(e) = api
        .patch_status(
            name,
            &PatchParams::apply(api::FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        debug!(error = %e, "writing store status failed");
    }
}

/// Due when never checked, when the spec changed (generation; our own status writes do not count), or
/// when the period passed.
fn due(
    checked: &HashMap<String, (Option<i64>, tokio::time::Instant)>,
    key: &str,
    generation: Option<i64>,
    failing: bool,
) -> bool {
    match checked.get(key) {
        None => true,
        Some((g, at)) => *g != generation || at.elapsed() >= if failing { PROBE } else { PERIOD },
    }
}
