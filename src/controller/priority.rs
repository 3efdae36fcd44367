//! The priority lane (DESIGN §2.7): new and changed SecretRefs go ahead of periodic refreshes.
//!
//! kube-runtime's queue is first-come-first-served by due time: when ten thousand refreshes are due at
//! once (a store changed), a SecretRef created a moment later would wait behind all of them. So the
//! SecretRef watch also hands every urgent object ([`is_urgent`]) to a small fast lane that reconciles
//! it at once, next to the queue. [`Claims`] keep the two from reconciling one object at the same
//! time; the controller's own (queued) reconcile of it later finds it in sync, and sets its requeue.

use std::collections::HashSet;
use std::sync::Mutex;

use kube::ResourceExt;
use tokio::sync::Notify;

use crate::api::{self, SecretRef};

/// Whether a SecretRef goes ahead of periodic refreshes: never synced, spec changed since the last
/// sync, a new force-sync request, or being deleted.
pub fn is_urgent(sref: &SecretRef) -> bool {
    let Some(st) = sref.status.as_ref() else {
        return true;
    };
    st.observed_generation != sref.metadata.generation
        || sref.metadata.deletion_timestamp.is_some()
        || sref
            .annotations()
            .get(api::FORCE_SYNC_ANNOTATION)
            .is_some_and(|v| st.last_force_sync.as_ref() != Some(v))
}

/// Which SecretRefs are being reconciled right now, so the fast lane and the controller's queue never
/// reconcile the same one at once.
#[derive(Default)]
pub struct Claims {
    held: Mutex<HashSet<String>>,
    released: Notify,
}

/// A held claim; released on drop.
pub struct Claim<'a> {
    claims: &'a Claims,
    key: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(&self.claims.held).remove(&self.key);
        self.claims.released.notify_waiters();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Claims {
    /// Claims `key` if nobody holds it.
    pub fn try_claim(&self, key: &str) -> Option<Claim<'_>> {
        lock(&self.held).insert(key.to_string()).then(|| Claim {
            claims: self,
            key: key.to_string(),
        })
    }

    /// Claims `key`, waiting while somebody else holds it.
    pub async fn claim(&self, key: &str) -> Claim<'_> {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(c) = self.try_claim(key) {
                return c;
            }
            released.await;
        }
    }

    /// Claims held now.
    pub fn held(&self) -> usize {
        lock(&self.held).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn claims_are_exclusive_and_waiters_get_them_when_released() {
        let claims = Arc::new(Claims::default());
        let a = claims.try_claim("ns/a").expect("free");
        assert!(claims.try_claim("ns/a").is_none(), "held");
        let _b = claims.try_claim("ns/b").expect("another key is free");
        let c = claims.clone();
        let waiter = tokio::spawn(async move {
            let _claim = c.claim("ns/a").await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "waits while held");
        drop(a);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("gets it once released")
            .unwrap();
        assert_eq!(claims.held(), 1);
        assert!(claims.try_claim("ns/a").is_some());
    }

    #[test]
    fn new_changed_forced_and_deleted_srefs_are_urgent() {
        let mut s: SecretRef = serde_json::from_value(serde_json::json!({
            "apiVersion": "secretsync.io/v1alpha1", "kind": "SecretRef",
            "metadata": {"name": "a", "namespace": "n", "generation": 2},
            "spec": {"storeRef": {"name": "s"}, "data": [{"secretKey": "k", "remoteRef": {"key": "r"}}]}
        }))
        .unwrap();
        assert!(is_urgent(&s), "never synced");
        s.status = Some(crate::api::SecretRefStatus {
            observed_generation: Some(1),
            ..Default::default()
        });
        assert!(is_urgent(&s), "spec changed");
        s.status.as_mut().unwrap().observed_generation = Some(2);
        assert!(!is_urgent(&s), "synced: a periodic refresh");
        s.annotations_mut()
            .insert(api::FORCE_SYNC_ANNOTATION.into(), "1".into());
        assert!(is_urgent(&s), "force-sync requested");
        s.status.as_mut().unwrap().last_force_sync = Some("1".into());
        assert!(!is_urgent(&s), "force-sync done");
    }
}
