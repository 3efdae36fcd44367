//! Judging SecretRefs offline, for `check` and `render`: validation, store resolution
//! ([`super::offline`]), the controller's read step ([`crate::stores::read`], collecting every
//! failure instead of stopping at the first) and build step ([`desired::build`]).

use std::sync::Arc;

use async_trait::async_trait;

use super::manifests::{Manifests, Problem};
use super::offline::Offline;
use crate::api::{Reason, StoreKind};
use crate::audit::HmacKey;
use crate::controller::desired::{self, DesiredSecret};
use crate::providers::{FetchedSecret, FindQuery, Provider, ProviderError, RemoteRef};
use crate::stores::read::{self, Mode, Reader};

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

/// Reads straight from the provider (offline there is no cache or budget).
struct Direct(Arc<dyn Provider>);

#[async_trait]
impl Reader for Direct {
    async fn find(&self, q: &FindQuery) -> Result<Vec<String>, ProviderError> {
        self.0.find(q).await
    }
    async fn get_many(&self, refs: &[RemoteRef]) -> Vec<Result<FetchedSecret, ProviderError>> {
        self.0.get_many(refs).await
    }
}

/// Judges every SecretRef (see the module docs) with the namespace's key derived from `hmac`, as the
/// controller does. A `find` that matches nothing is a problem here (in the cluster it yields an
/// empty part of the Secret). Results are in the manifests' (sorted) order.
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
        let resolved = match offline.resolve(sref).await {
            Ok(s) => s,
            Err(p) => {
                ev.problems.push(p);
                out.push(ev);
                continue;
            }
        };
        let report = read::read(
            &resolved.store,
            &ev.namespace,
            &sref.spec,
            &Direct(resolved.provider.clone()),
            Mode::CollectAll,
        )
        .await;
        for f in &report.failures {
            ev.problems.push(Problem::new(
                f.error.reason(),
                &f.field,
                f.error.to_string(),
            ));
        }
        for (i, keys) in &report.answers.found {
            if keys.is_empty() {
                ev.problems.push(Problem::new(
                    Reason::RemoteKeyNotFound,
                    format!("spec.dataFrom[{i}].find"),
                    format!(
                        "the search matched no remote keys in store {:?}",
                        resolved.store.name
                    ),
                ));
            }
        }
        let answers = report.into_answers();
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
