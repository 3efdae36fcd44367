//! Leader election with a Lease in the controller's namespace (kube-lease-manager).
//!
//! Every replica keeps its watches warm; only the lease holder reads providers and writes. Losing the
//! lease clears the write flag at once (every write path checks it), and the replica keeps trying to
//! re-acquire — no process exit, no split brain. On shutdown the lease is released so a standby takes
//! over without waiting for expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tracing::{info, warn};

use super::context::LeaseSettings;

/// Runs the election until `shutdown`, mirroring the lock state into `leader`; `known` turns true
/// once the first lease check finished; `became_leader` gets a message on every acquisition.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    namespace: String,
    identity: String,
    settings: LeaseSettings,
    leader: Arc<AtomicBool>,
    known: Arc<AtomicBool>,
    became_leader: UnboundedSender<()>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), &settings.lease_name)
            .with_namespace(&namespace)
            .with_identity(&identity)
            .with_duration(settings.duration_secs)
            .with_grace(settings.grace_secs)
            .with_field_manager(format!("secretsync-lease-{identity}"))
            .build()
            .await;
        match built {
            Ok(m) => break m,
            Err(e) => {
                warn!(error = %e, "creating the lease manager failed; retrying");
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    // A standby replica hears nothing from `changed()` while another replica holds the lease; its state
    // is known once a full lease period has passed without winning.
    let known_after = tokio::time::sleep(Duration::from_secs(settings.duration_secs.max(1)));
    tokio::pin!(known_after);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut known_after, if !known.load(Ordering::Relaxed) => {
                known.store(true, Ordering::Relaxed);
            }
            r = manager.changed() => match r {
                Ok(is_leader) => {
                    let was = leader.swap(is_leader, Ordering::SeqCst);
                    known.store(true, Ordering::Relaxed);
                    if is_leader && !was {
                        info!(identity = %identity, "acquired the leader lease");
                        let _ = became_leader.unbounded_send(());
                    } else if !is_leader && was {
                        warn!(identity = %identity, "lost the leader lease; writes stopped");
                    }
                }
                Err(e) => {
                    if leader.swap(false, Ordering::SeqCst) {
                        warn!(error = %e, "lease check failed; writes stopped until the lease is confirmed");
                    }
                    known.store(true, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
    leader.store(false, Ordering::SeqCst);
    if let Err(e) = manager.release().await {
        warn!(error = %e, "releasing the lease failed");
    } else {
        info!("released the leader lease");
    }
}
