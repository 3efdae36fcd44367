//! The SecretRef cache: every SecretRef, compact.
//!
//! kube-runtime's reflector store keeps each object as its typed struct (about 0.9 KiB of fields and
//! string headers before any string) behind a key that repeats its name, namespace, uid and
//! resourceVersion: about 2 KiB per SecretRef, most of the operator's memory at 100,000 of them. This
//! cache keeps what a SecretRef is on the wire instead — its JSON without `managedFields` and
//! kubectl's last-applied copy, LZ4-compressed (about 0.6 KiB) — under the interned `namespace/name`
//! key the work queue uses, plus the two facts looked up without decoding (its store and whether
//! the ClusterSecretRef fan-out labelled it). A reconcile decodes the one object it needs (a few
//! microseconds).
//!
//! It follows the watch like a reflector: a (re)list is buffered and replaces the cache when it is
//! complete ([`SecretRefCache::init_done`]), so a relist never shows a half-empty cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use kube::ResourceExt;
use tokio::sync::Notify;

use crate::api::{SecretRef, StoreKind};

/// A SecretRef, compact.
struct Entry {
    /// LZ4 of its JSON (length-prefixed).
    blob: Box<[u8]>,
    /// Its store (kind and name; a namespaced store is in the SecretRef's namespace).
    store_kind: StoreKind,
    store_name: Arc<str>,
    /// Carries the fan-out's label (see [`super::fanout`]).
    fanout: bool,
}

#[derive(Default)]
struct Inner {
    objects: HashMap<Arc<str>, Entry>,
    /// A list in progress (replaces `objects` when done).
    listing: Option<HashMap<Arc<str>, Entry>>,
    /// Store names, interned.
    store_names: HashMap<Arc<str>, ()>,
}

/// See the module documentation.
#[derive(Default)]
pub struct SecretRefCache {
    inner: RwLock<Inner>,
    ready: AtomicBool,
    became_ready: Notify,
}

/// Why a SecretRef could not be cached (it is then left out, and its reconcile finds nothing).
#[derive(Debug, thiserror::Error)]
#[error("SecretRef {key}: {message}")]
pub struct CacheError {
    key: String,
    message: String,
}

/// `namespace/name` of a SecretRef.
pub fn key_of(sref: &SecretRef) -> String {
    format!(
        "{}/{}",
        sref.namespace().unwrap_or_default(),
        sref.name_any()
    )
}

fn encode(sref: &SecretRef) -> Result<Box<[u8]>, String> {
    let json = serde_json::to_vec(sref).map_err(|e| e.to_string())?;
    Ok(lz4_flex::compress_prepend_size(&json).into_boxed_slice())
}

fn decode(blob: &[u8]) -> Option<SecretRef> {
    let json = lz4_flex::decompress_size_prepended(blob).ok()?;
    serde_json::from_slice(&json).ok()
}

impl SecretRefCache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn entry(inner: &mut Inner, sref: &SecretRef) -> Result<Entry, CacheError> {
        let blob = encode(sref).map_err(|message| CacheError {
            key: key_of(sref),
            message,
        })?;
        let name: &str = &sref.spec.store_ref.name;
        let store_name = match inner.store_names.get_key_value(name) {
            Some((k, ())) => k.clone(),
            None => {
                let k: Arc<str> = Arc::from(name);
                inner.store_names.insert(k.clone(), ());
                k
            }
        };
        Ok(Entry {
            blob,
            store_kind: sref.spec.store_ref.kind.unwrap_or_default(),
            store_name,
            fanout: sref
                .labels()
                .contains_key(crate::api::CLUSTER_SECRETREF_LABEL),
        })
    }

    /// A SecretRef was created or changed (`key` interned by the caller).
    pub fn apply(&self, key: Arc<str>, sref: &SecretRef) -> Result<(), CacheError> {
        let mut g = self.write();
        let e = Self::entry(&mut g, sref)?;
        g.objects.insert(key, e);
        Ok(())
    }

    /// A SecretRef is gone.
    pub fn delete(&self, key: &str) {
        self.write().objects.remove(key);
    }

    /// A (re)list starts.
    pub fn init_start(&self) {
        self.write().listing = Some(HashMap::new());
    }

    /// One object of the (re)list.
    pub fn init_apply(&self, key: Arc<str>, sref: &SecretRef) -> Result<(), CacheError> {
        let mut g = self.write();
        let e = Self::entry(&mut g, sref)?;
        g.listing.get_or_insert_with(HashMap::new).insert(key, e);
        Ok(())
    }

    /// The (re)list is complete: it replaces the cache. Returns every key listed and every key that
    /// was cached and is gone now.
    pub fn init_done(&self) -> (Vec<Arc<str>>, Vec<Arc<str>>) {
        let mut g = self.write();
        // (The watcher always starts a list with `Init`; without one there is nothing to replace.)
        let Some(listed) = g.listing.take() else {
            drop(g);
            self.ready.store(true, Ordering::Release);
            self.became_ready.notify_waiters();
            return (Vec::new(), Vec::new());
        };
        let gone: Vec<Arc<str>> = g
            .objects
            .keys()
            .filter(|k| !listed.contains_key(&***k))
            .cloned()
            .collect();
        let keys: Vec<Arc<str>> = listed.keys().cloned().collect();
        g.objects = listed;
        let used: std::collections::HashSet<Arc<str>> =
            g.objects.values().map(|e| e.store_name.clone()).collect();
        g.store_names.retain(|k, ()| used.contains(k));
        g.objects.shrink_to_fit();
        drop(g);
        self.ready.store(true, Ordering::Release);
        self.became_ready.notify_waiters();
        (keys, gone)
    }

    /// Whether the first list is complete.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Waits until the first list is complete.
    pub async fn wait_ready(&self) {
        loop {
            let n = self.became_ready.notified();
            if self.is_ready() {
                return;
            }
            n.await;
        }
    }

    /// The SecretRef `key`, decoded.
    pub fn get(&self, key: &str) -> Option<Arc<SecretRef>> {
        let g = self.read();
        g.objects
            .get(key)
            .and_then(|e| decode(&e.blob))
            .map(Arc::new)
    }

    /// Every key.
    pub fn keys(&self) -> Vec<Arc<str>> {
        self.read().objects.keys().cloned().collect()
    }

    /// Number of SecretRefs cached.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the compressed objects (the bench's cache size).
    pub fn blob_bytes(&self) -> usize {
        self.read().objects.values().map(|e| e.blob.len()).sum()
    }

    /// The keys of the SecretRefs using a store: a SecretStore `name` in `namespace`, or a
    /// ClusterSecretStore `name` (`namespace` `None`).
    pub fn keys_for_store(
        &self,
        kind: StoreKind,
        name: &str,
        namespace: Option<&str>,
    ) -> Vec<Arc<str>> {
        let g = self.read();
        g.objects
            .iter()
            .filter(|(k, e)| {
                e.store_kind == kind
                    && &*e.store_name == name
                    && namespace.is_none_or(|ns| k.split_once('/').is_some_and(|(n, _)| n == ns))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The SecretRefs the fan-out looks at: those carrying its label and those named `names` (in any
    /// namespace), decoded.
    pub fn for_fanout(&self, names: &[String]) -> Vec<Arc<SecretRef>> {
        let g = self.read();
        g.objects
            .iter()
            .filter(|(k, e)| {
                e.fanout
                    || k.split_once('/')
                        .is_some_and(|(_, n)| names.iter().any(|x| x == n))
            })
            .filter_map(|(_, e)| decode(&e.blob))
            .map(Arc::new)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sref(ns: &str, name: &str, store: &str, cluster: bool) -> SecretRef {
        let kind = if cluster {
            "ClusterSecretStore"
        } else {
            "SecretStore"
        };
        serde_json::from_value(serde_json::json!({
            "apiVersion": "secretsync.io/v1alpha1", "kind": "SecretRef",
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "resourceVersion": "7",
                "labels": {"a": "b"}, "finalizers": ["secretsync.io/finalizer"]},
            "spec": {"storeRef": {"name": store, "kind": kind},
                "data": [{"secretKey": "password", "remoteRef": {"key": "db/password", "property": "p"}}]},
            "status": {"observedGeneration": 1, "targetName": name, "dataHmac": "00ff",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "ok",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .unwrap()
    }

    #[test]
    fn objects_come_back_exactly_as_cached() {
        let c = SecretRefCache::default();
        let s = sref("team-a", "db", "vault", false);
        c.apply(Arc::from("team-a/db"), &s).unwrap();
        let back = c.get("team-a/db").unwrap();
        assert_eq!(
            serde_json::to_value(&*back).unwrap(),
            serde_json::to_value(&s).unwrap()
        );
        assert!(c.get("team-a/other").is_none());
        // Compact: well under the JSON it came from.
        assert!(c.blob_bytes() < serde_json::to_vec(&s).unwrap().len());
    }

    #[test]
    fn a_relist_replaces_the_cache_when_complete() {
        let c = SecretRefCache::default();
        assert!(!c.is_ready());
        c.init_start();
        c.init_apply(Arc::from("a/x"), &sref("a", "x", "s", false))
            .unwrap();
        c.init_apply(Arc::from("a/y"), &sref("a", "y", "s", false))
            .unwrap();
        assert_eq!(c.len(), 0, "nothing shows before the list is complete");
        let (listed, gone) = c.init_done();
        assert_eq!(listed.len(), 2);
        assert!(gone.is_empty());
        assert!(c.is_ready());
        // A relist after a watch gap: y was deleted meanwhile, z created.
        c.init_start();
        c.init_apply(Arc::from("a/x"), &sref("a", "x", "s", false))
            .unwrap();
        c.init_apply(Arc::from("a/z"), &sref("a", "z", "s", false))
            .unwrap();
        assert_eq!(c.len(), 2, "the old contents stay during the relist");
        assert!(c.get("a/y").is_some());
        let (_, gone) = c.init_done();
        assert_eq!(gone.iter().map(|k| &**k).collect::<Vec<_>>(), ["a/y"]);
        assert!(c.get("a/y").is_none());
        assert!(c.get("a/z").is_some());
    }

    #[test]
    fn store_lookups_respect_kind_and_namespace() {
        let c = SecretRefCache::default();
        c.apply(Arc::from("a/x"), &sref("a", "x", "vault", false))
            .unwrap();
        c.apply(Arc::from("b/x"), &sref("b", "x", "vault", false))
            .unwrap();
        c.apply(Arc::from("b/y"), &sref("b", "y", "vault", true))
            .unwrap();
        let mut ks: Vec<String> = c
            .keys_for_store(StoreKind::SecretStore, "vault", Some("b"))
            .iter()
            .map(|k| k.to_string())
            .collect();
        ks.sort();
        assert_eq!(ks, ["b/x"]);
        let ks = c.keys_for_store(StoreKind::ClusterSecretStore, "vault", None);
        assert_eq!(ks.len(), 1);
        assert_eq!(&*ks[0], "b/y");
        c.delete("b/y");
        assert!(
            c.keys_for_store(StoreKind::ClusterSecretStore, "vault", None)
                .is_empty()
        );
    }

    #[test]
    fn the_fanout_sees_its_labelled_and_same_named_secretrefs() {
        let c = SecretRefCache::default();
        let mut owned = sref("a", "shared", "cs", true);
        owned.metadata.labels = Some(
            [(
                crate::api::CLUSTER_SECRETREF_LABEL.to_string(),
                "shared".to_string(),
            )]
            .into(),
        );
        c.apply(Arc::from("a/shared"), &owned).unwrap();
        c.apply(Arc::from("b/shared"), &sref("b", "shared", "s", false))
            .unwrap();
        c.apply(Arc::from("b/other"), &sref("b", "other", "s", false))
            .unwrap();
        let seen = c.for_fanout(&["shared".to_string()]);
        assert_eq!(seen.len(), 2);
        let seen = c.for_fanout(&[]);
        assert_eq!(seen.len(), 1, "only the labelled one");
    }
}
