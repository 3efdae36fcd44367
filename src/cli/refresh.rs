//! `secretsync refresh`: force an immediate refresh by setting the `secretsync.io/force-sync`
//! annotation (through the current kubeconfig) on one SecretRef, every SecretRef of a namespace, or
//! every SecretRef that uses a given store.

use std::io::Write;

use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::api::{self, SecretRef, StoreKind};

/// What to refresh.
#[derive(clap::Args, Debug)]
pub struct RefreshArgs {
    /// A SecretRef name (with `--namespace`); omit to refresh every SecretRef selected by the flags.
    pub name: Option<String>,
    /// Namespace of the SecretRef(s); default: the kubeconfig's namespace.
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Every namespace (with `--store` or alone).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only SecretRefs using this store (`NAME` for a SecretStore, `ClusterSecretStore/NAME` for a cluster store).
    #[arg(long)]
    pub store: Option<String>,
}

/// Which SecretRefs a refresh selects (pure).
pub fn selects(sref: &SecretRef, name: Option<&str>, store: Option<&str>) -> bool {
    if name.is_some_and(|n| sref.name_any() != n) {
        return false;
    }
    match store {
        None => true,
        Some(s) => {
            let (kind, sname) = match s.strip_prefix("ClusterSecretStore/") {
                Some(n) => (StoreKind::ClusterSecretStore, n),
                None => (
                    StoreKind::SecretStore,
                    s.strip_prefix("SecretStore/").unwrap_or(s),
                ),
            };
            sref.spec.store_ref.name == sname
                && sref.spec.store_ref.kind.unwrap_or_default() == kind
        }
    }
}

/// Annotates the selected SecretRefs with a new force-sync value; prints one line per SecretRef.
pub async fn run(args: RefreshArgs, out: &mut dyn Write) -> anyhow::Result<usize> {
    let client = Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("connecting to Kubernetes: {e}"))?;
    let api: Api<SecretRef> = if args.all_namespaces {
        Api::all(client.clone())
    } else {
        match &args.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::default_namespaced(client.clone()),
        }
    };
    let value = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let targets: Vec<SecretRef> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|s| selects(s, args.name.as_deref(), args.store.as_deref()))
        .collect();
    if targets.is_empty() {
        anyhow::bail!("no SecretRef matches");
    }
    let patch = json!({"metadata": {"annotations": {api::FORCE_SYNC_ANNOTATION: value}}});
    for s in &targets {
        let ns = s.namespace().unwrap_or_default();
        let a: Api<SecretRef> = Api::namespaced(client.clone(), &ns);
        a.patch(
            &s.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        writeln!(out, "secretref {ns}/{} refresh requested", s.name_any())?;
    }
    Ok(targets.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sref(name: &str, store: &str, kind: Option<StoreKind>) -> SecretRef {
        let mut s = SecretRef::new(name, Default::default());
        s.spec.store_ref.name = store.into();
        s.spec.store_ref.kind = kind;
        s
    }

    #[test]
    fn selection_by_name_and_store() {
        let a = sref("a", "aws", None);
        let b = sref("b", "shared", Some(StoreKind::ClusterSecretStore));
        assert!(selects(&a, None, None));
        assert!(selects(&a, Some("a"), None) && !selects(&b, Some("a"), None));
        assert!(selects(&a, None, Some("aws")) && selects(&a, None, Some("SecretStore/aws")));
        assert!(!selects(&a, None, Some("ClusterSecretStore/aws")));
        assert!(
            selects(&b, None, Some("ClusterSecretStore/shared"))
                && !selects(&b, None, Some("shared"))
        );
    }
}
