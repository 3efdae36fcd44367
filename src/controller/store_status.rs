//! The `Ready` condition of SecretStores and ClusterSecretStores: credentials valid and provider
//! reachable, checked when a store changes and every few minutes. Written only when it changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::debug;

use super::Context;
use super::conditions as cond;
use crate::api::{self, ClusterSecretStore, SecretStore, SecretStoreStatus};

/// How often every store is re-validated.
pub const PERIOD: Duration = Duration::from_secs(300);
/// How often a store with SecretRefs waiting out its failures is probed (recovery within seconds,
/// without every SecretRef retrying on its own backoff).
pub const PROBE: Duration = Duration::from_secs(10);

fn next_status(
    old: Option<&SecretStoreStatus>,
    generation: Option<i64>,
    res: &Result<(), crate::stores::StoreError>,
) -> SecretStoreStatus {
    let mut st = old.cloned().unwrap_or_default();
    match res {
        Ok(()) => cond::set_condition(
            &mut st.conditions,
            cond::READY,
            true,
            crate::api::Reason::Valid,
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

/// Store checks running at once.
pub const CONCURRENT_CHECKS: usize = 8;
/// The longest one store check may take (its provider's own timeouts are shorter); past it the store
/// is reported unavailable and checked again on its schedule.
pub const CHECK_DEADLINE: Duration = Duration::from_secs(20);

/// One store to check.
enum Check {
    Namespaced(Arc<SecretStore>),
    Cluster(Arc<ClusterSecretStore>),
}

impl Check {
    fn key(&self) -> String {
        match self {
            Check::Namespaced(s) => format!(
                "SecretStore/{}/{}",
                s.namespace().unwrap_or_default(),
                s.name_any()
            ),
            Check::Cluster(s) => format!("ClusterSecretStore/{}", s.name_any()),
        }
    }

    fn generation(&self) -> Option<i64> {
        match self {
            Check::Namespaced(s) => s.metadata.generation,
            Check::Cluster(s) => s.metadata.generation,
        }
    }

    /// Checks the store (within [`CHECK_DEADLINE`]) and writes its status if it changed.
    async fn run(&self, ctx: &Context) {
        let name = match self {
            Check::Namespaced(s) => s.name_any(),
            Check::Cluster(s) => s.name_any(),
        };
        let check = async {
            match self {
                Check::Namespaced(s) => ctx.stores.check_store(s).await,
                Check::Cluster(s) => ctx.stores.check_cluster_store(s).await,
            }
        };
        let res = tokio::time::timeout(CHECK_DEADLINE, check)
            .await
            .unwrap_or_else(|_| {
                Err(crate::stores::StoreError::Unavailable {
                    store: name.clone(),
                    message: format!(
                        "checking the store took longer than {}s",
                        CHECK_DEADLINE.as_secs()
                    ),
                })
            });
        if res.is_ok() {
            ctx.wake_store(&self.key());
        }
        match self {
            Check::Namespaced(s) => {
                let st = next_status(s.status.as_ref(), s.metadata.generation, &res);
                if Some(&st) != s.status.as_ref() {
                    let api = Api::<SecretStore>::namespaced(
                        ctx.client.clone(),
                        &s.namespace().unwrap_or_default(),
                    );
                    write_status(api, &name, "SecretStore", &st).await;
                }
            }
            Check::Cluster(s) => {
                let st = next_status(s.status.as_ref(), s.metadata.generation, &res);
                if Some(&st) != s.status.as_ref() {
                    let api = Api::<ClusterSecretStore>::all(ctx.client.clone());
                    write_status(api, &name, "ClusterSecretStore", &st).await;
                }
            }
        }
    }
}

type Checked = Arc<std::sync::Mutex<HashMap<String, (Option<i64>, tokio::time::Instant)>>>;

/// Validates stores on change (polled from the reflectors every 2 s) and every [`PERIOD`]. Checks
/// run concurrently ([`CONCURRENT_CHECKS`]), each within [`CHECK_DEADLINE`]: one tenant's slow
/// endpoint never delays the checks of other stores.
pub async fn run(
    ctx: Arc<Context>,
    stores: Store<SecretStore>,
    cluster: Store<ClusterSecretStore>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let checked: Checked = Arc::default();
    let in_flight: Arc<std::sync::Mutex<HashSet<String>>> = Arc::default();
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CHECKS));
    loop {
        // Deleted stores and replaced store configurations: their providers and cached answers go.
        ctx.fetcher.forget_stores(&ctx.stores.sweep());
        if ctx.may_write() {
            let failing = ctx.failing_stores();
            let candidates = stores
                .state()
                .into_iter()
                .map(Check::Namespaced)
                .chain(cluster.state().into_iter().map(Check::Cluster));
            for c in candidates {
                let key = c.key();
                let is_due = {
                    let done = checked.lock().unwrap_or_else(|p| p.into_inner());
                    due(&done, &key, c.generation(), failing.contains(&key))
                };
                if !is_due
                    || !in_flight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key.clone())
                {
                    continue;
                }
                let (ctx, checked, in_flight, slots) = (
                    ctx.clone(),
                    checked.clone(),
                    in_flight.clone(),
                    slots.clone(),
                );
                tokio::spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    c.run(&ctx).await;
                    checked
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key.clone(), (c.generation(), tokio::time::Instant::now()));
                    in_flight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key);
                });
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
