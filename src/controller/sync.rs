//! What one reconcile does, decided without IO (DESIGN §2.1–2.4, §2.9, §2.10): from the SecretRef,
//! its old status, the target Secret as read and what the sources said, the [`Outcome`] — the write
//! or delete (if any), the new status, the events and the audit records. `reconcile::apply` gathers
//! the inputs and carries the outcome out; the model test (`tests/model_reconcile.rs`) drives this
//! same function with random answers.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::desired::{BuildError, DesiredSecret};
use super::error::Error;
use super::read_outcome::{self, NotFoundAnswer};
use super::target::{self, Decision, Ownership};
use super::{conditions as cond, events, schedule};
use crate::api::{self, DeletionPolicy, Reason, SecretRef, SecretRefStatus, StoreKind, duration};
use crate::audit::HmacKey;
use crate::stores::StoreError;

/// Everything the outcome depends on besides what the sources said.
pub struct SyncInput<'a> {
    /// The SecretRef (name, namespace, generation, uid, spec).
    pub sref: &'a SecretRef,
    /// Its status before this reconcile.
    pub old: &'a SecretRefStatus,
    /// The target Secret as read (`None`: it does not exist).
    pub existing: Option<&'a Secret>,
    /// How the SecretRef recognises its Secret.
    pub owner: &'a Ownership,
    /// The namespace's HMAC key.
    pub key: &'a HmacKey,
    /// The controller's cluster-wide key (status written by versions before per-namespace keys).
    pub legacy_key: &'a HmacKey,
    /// The `force-sync` value this reconcile acts on, if it acts on a new one.
    pub forced: Option<&'a str>,
    /// The rotation this process last announced for the SecretRef ([`rotation_id`]; 0: none).
    pub announced: u32,
    /// Now.
    pub now: DateTime<Utc>,
}

/// What the sources said, or why they were not asked.
pub enum Sourced<'a> {
    /// Writes are paused by the `secretsync.io/paused` annotation.
    Paused,
    /// Every source answered and the desired Secret was built, from this store.
    Built {
        /// The Secret to hold.
        desired: &'a DesiredSecret,
        /// Its store's kind.
        store_kind: StoreKind,
        /// Its store's name.
        store: &'a str,
    },
    /// The reads failed. `all_not_found`: every read said not found authoritatively; `scheduled`:
    /// the read was the refresh slot's (only those count toward deletion).
    ReadFailed {
        /// The most telling failure.
        error: &'a Error,
        /// Every read said not found authoritatively.
        all_not_found: bool,
        /// The read was the refresh slot's.
        scheduled: bool,
    },
    /// Anything else failed (the spec, the store, the build).
    Failed(&'a Error),
}

/// A write of the target Secret.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Server-side apply of this object (it carries its `resourceVersion` precondition) as this
    /// field manager.
    Apply {
        /// The object.
        object: Box<Secret>,
        /// The field manager.
        field_manager: String,
    },
    /// Adopt a Secret External Secrets Operator wrote: this JSON merge patch (data, our marks,
    /// ESO's marks removed, the `resourceVersion` precondition) in one write, never a delete
    /// ([`target::adoption_patch`]).
    Adopt {
        /// The Secret's name.
        name: String,
        /// The merge patch.
        patch: serde_json::Value,
    },
    /// Delete exactly this Secret (uid and resourceVersion preconditions).
    Delete {
        /// Its name.
        name: String,
        /// Its uid.
        uid: Option<String>,
        /// Its resourceVersion.
        resource_version: Option<String>,
    },
}

/// An event to publish about the SecretRef.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// Normal or Warning.
    pub warning: bool,
    /// The event's reason.
    pub reason: Reason,
    /// The event's action.
    pub action: &'static str,
    /// The note (fitted to the API server's limit when published).
    pub note: String,
}

impl Note {
    /// The kube-runtime event type.
    pub fn event_type(&self) -> EventType {
        if self.warning {
            EventType::Warning
        } else {
            EventType::Normal
        }
    }
}

/// An audit record to write about the SecretRef (the caller adds who, when and the store).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditNote {
    /// `write`, `delete` or `deny`.
    pub action: &'static str,
    /// `success` or the refusal's reason.
    pub outcome: &'static str,
    /// The refused remote key.
    pub remote_key: Option<String>,
    /// The Secret written or deleted (`namespace/name`).
    pub target: Option<String>,
    /// The data HMAC written.
    pub hmac: Option<String>,
}

/// A rotation this outcome announces (Rotated event, metric, restarts).
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    /// Remember it, so that it is not announced twice ([`SyncInput::announced`]).
    pub id: u32,
    /// The Secret's new data HMAC (the restart annotation).
    pub data_hmac: String,
    /// The Secret's name.
    pub secret: String,
}

/// What one reconcile does.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The write or delete of the target Secret, if any (before anything else).
    pub write: Option<Write>,
    /// The new status (written only when it differs from the old one).
    pub status: SecretRefStatus,
    /// Events, in order.
    pub events: Vec<Note>,
    /// Audit records, in order.
    pub audit: Vec<AuditNote>,
    /// A rotation to announce.
    pub rotation: Option<Rotation>,
    /// The error the reconcile ends with, when the sources answered but the target refused.
    pub error: Option<Error>,
}

impl Outcome {
    /// Whether the new status says Ready.
    pub fn ready(&self) -> bool {
        cond::ready(Some(&self.status)).is_some_and(|(ok, _)| ok)
    }
}

/// A short, non-zero identity of a data HMAC (the rotation last announced, kept in memory).
pub fn rotation_id(data_hmac: &str) -> u32 {
    (schedule::stable_hash(data_hmac) as u32).max(1)
}

/// The Secret the SecretRef writes (`target.name`, default its own name).
pub fn target_name(sref: &SecretRef) -> String {
    sref.spec
        .target
        .as_ref()
        .and_then(|t| t.name.clone())
        .unwrap_or_else(|| sref.name_any())
}

/// The outcome of one reconcile (pure).
pub fn outcome(input: &SyncInput<'_>, sourced: Sourced<'_>) -> Outcome {
    match sourced {
        Sourced::Paused => paused(input),
        Sourced::Failed(e) => failed(input, e),
        Sourced::ReadFailed {
            error,
            all_not_found,
            scheduled,
        } => read_failed(input, error, all_not_found, scheduled),
        Sourced::Built {
            desired,
            store_kind,
            store,
        } => built(input, desired, store_kind, store),
    }
}

fn empty(status: SecretRefStatus) -> Outcome {
    Outcome {
        write: None,
        status,
        events: Vec::new(),
        audit: Vec::new(),
        rotation: None,
        error: None,
    }
}

fn paused(input: &SyncInput<'_>) -> Outcome {
    let generation = input.sref.metadata.generation;
    let mut st = input.old.clone();
    cond::set_condition(
        &mut st.conditions,
        cond::READY,
        false,
        Reason::Paused,
        "writes are paused by the secretsync.io/paused annotation",
        generation,
        input.now,
    );
    st.observed_generation = generation;
    empty(st)
}

/// The audit `deny` record of a refusal (none for failures that are not refusals).
fn deny(e: &Error) -> Option<AuditNote> {
    let outcome = e.refusal()?;
    Some(AuditNote {
        action: "deny",
        outcome: outcome.as_str(),
        remote_key: match e {
            Error::Store(StoreError::KeyNotAllowed { key, .. }) => Some(key.clone()),
            _ => None,
        },
        target: None,
        hmac: None,
    })
}

/// A failure: `Ready=False` with the error's reason, a Warning event when the reason changes, a
/// `deny` audit record for refusals; any other failure than a counted not-found breaks the streak.
fn failed(input: &SyncInput<'_>, e: &Error) -> Outcome {
    let generation = input.sref.metadata.generation;
    let mut st = input.old.clone();
    st.not_found = None;
    let mut out = empty(SecretRefStatus::default());
    out.audit.extend(deny(e));
    cond::set_condition(
        &mut st.conditions,
        cond::READY,
        false,
        e.reason(),
        &e.to_string(),
        generation,
        input.now,
    );
    if e.observes_spec() {
        st.observed_generation = generation;
    }
    if cond::ready(Some(input.old)).map(|(_, r)| r).as_deref() != Some(e.reason().as_str()) {
        out.events.push(Note {
            warning: true,
            reason: e.event_reason(),
            action: "Sync",
            note: e.to_string(),
        });
    }
    out.status = st;
    out
}

/// Failed reads: for `deletionPolicy: Delete`, authoritative not-founds at scheduled refreshes
/// count, and the Secret (if owned) is deleted after three in a row spanning ten minutes.
fn read_failed(input: &SyncInput<'_>, e: &Error, all_not_found: bool, scheduled: bool) -> Outcome {
    let sref = input.sref;
    let generation = sref.metadata.generation;
    let delete_policy = sref.spec.deletion_policy() == DeletionPolicy::Delete;
    // A spec change starts the streak afresh.
    let streak = input
        .old
        .not_found
        .as_ref()
        .filter(|_| input.old.observed_generation == generation);
    let step = read_outcome::not_found_step(
        streak,
        NotFoundAnswer::of(delete_policy && all_not_found, scheduled),
        input.now,
    );
    let Some(rec) = step.record else {
        return failed(input, e);
    };
    let mut out = empty(SecretRefStatus::default());
    if step.delete
        && let Some(secret) = input.existing
        && input.owner.owns(secret)
    {
        let tname = secret.name_any();
        let ns = sref.namespace().unwrap_or_default();
        out.write = Some(Write::Delete {
            name: tname.clone(),
            uid: secret.uid(),
            resource_version: secret.resource_version(),
        });
        out.audit.push(AuditNote {
            action: "delete",
            outcome: "success",
            remote_key: None,
            target: Some(format!("{ns}/{tname}")),
            hmac: None,
        });
        out.events.push(Note {
            warning: true,
            reason: Reason::SecretDeleted,
            action: "Delete",
            note: format!(
                "remote data is gone (not found {} times since {}); deleted Secret {tname:?} per deletionPolicy Delete",
                rec.count,
                api::from_time(&rec.since).to_rfc3339()
            ),
        });
    }
    let mut st = input.old.clone();
    st.not_found = Some(rec);
    cond::set_condition(
        &mut st.conditions,
        cond::READY,
        false,
        e.reason(),
        &e.to_string(),
        generation,
        input.now,
    );
    if cond::ready(Some(input.old)).map(|(_, r)| r).as_deref() != Some(e.reason().as_str()) {
        out.events.push(Note {
            warning: true,
            reason: Reason::SyncFailed,
            action: "Sync",
            note: e.to_string(),
        });
    }
    out.status = st;
    out
}

/// The `Expiring` message when a provider-reported expiry is within `expiry.warnBefore`.
pub fn expiry_warning(
    sref: &SecretRef,
    expires: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<String> {
    let expires = expires?;
    let warn = sref
        .spec
        .expiry
        .as_ref()?
        .warn_before
        .as_deref()
        .and_then(|w| duration::parse(w).ok())?;
    let left = expires - now;
    if left <= chrono::Duration::zero() {
        Some(format!(
            "a synced value expired at {}",
            expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))
    } else if left.to_std().unwrap_or_default() <= warn {
        Some(format!(
            "a synced value expires at {} (within expiry.warnBefore {})",
            expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            duration::format(warn)
        ))
    } else {
        None
    }
}

/// The note of a `Rotated` event: counts first, then as many key names (with versions) as the
/// event note has room for (DESIGN §2.10).
pub fn rotation_note(tname: &str, old: &SecretRefStatus, desired: &DesiredSecret) -> String {
    let old_h: HashMap<&str, &str> = old
        .synced_keys
        .iter()
        .map(|k| (k.secret_key.as_str(), k.hmac.as_str()))
        .collect();
    let changed: Vec<String> = desired
        .synced_keys
        .iter()
        .filter(|k| old_h.get(k.secret_key.as_str()) != Some(&k.hmac.as_str()))
        .map(|k| match &k.version {
            Some(v) => format!("{} (version {v})", k.secret_key),
            None => k.secret_key.clone(),
        })
        .collect();
    let removed: Vec<String> = old
        .synced_keys
        .iter()
        .map(|k| k.secret_key.clone())
        .filter(|k| !desired.data.contains_key(k))
        .collect();
    let budget = events::NOTE_LIMIT - 200 - tname.len().min(600);
    let mut note = format!(
        "Secret {tname:?} rotated: {} key(s) changed{}",
        changed.len(),
        if changed.is_empty() {
            String::new()
        } else {
            let room = if removed.is_empty() {
                budget
            } else {
                budget / 2
            };
            format!(": {}", events::summarize(&changed, room))
        }
    );
    if !removed.is_empty() {
        note.push_str(&format!(
            "; {} key(s) removed: {}",
            removed.len(),
            events::summarize(&removed, budget / 2)
        ));
    }
    note
}

/// Every source answered and the desired Secret is built: decide, then record the sync.
fn built(
    input: &SyncInput<'_>,
    desired: &DesiredSecret,
    store_kind: StoreKind,
    store: &str,
) -> Outcome {
    let sref = input.sref;
    let old = input.old;
    let now = input.now;
    let generation = sref.metadata.generation;
    let ns = sref.namespace().unwrap_or_default();
    let tname = target_name(sref);
    let creation = sref.spec.creation_policy();
    // After an upgrade from one cluster-wide HMAC key, status still holds that key's HMACs: the
    // same data under the old key is a re-key (written once, no rotation, no restart), not a change.
    let last_synced: Option<String> = match old.data_hmac.as_deref() {
        Some(h) if h != desired.data_hmac && h == input.legacy_key.data_hmac(&desired.data) => {
            Some(desired.data_hmac.clone())
        }
        other => other.map(str::to_string),
    };
    let decision = target::decide(
        input.existing,
        desired,
        input.owner,
        creation,
        sref.spec.drift_policy(),
        last_synced.as_deref(),
        input.key,
    );
    let mut out = empty(SecretRefStatus::default());
    match &decision {
        Decision::Refused { reason, message } => {
            let e = Error::Build(BuildError {
                reason: *reason,
                field: "spec.target.name".into(),
                message: message.clone(),
            });
            let mut refused = failed(input, &e);
            refused.error = Some(e);
            return refused;
        }
        Decision::Create | Decision::Update { .. } => {
            // Only the Secret decided on: a Secret that appeared after the read is never
            // overwritten by a create, nor one changed since the read by an update (409, then the
            // next reconcile decides again).
            let precondition = match &decision {
                Decision::Create => Some(target::CREATE_ONLY.to_string()),
                _ => input.existing.and_then(|s| s.resource_version()),
            };
            let object =
                target::apply_object(desired, &ns, input.owner, creation, precondition.as_deref());
            out.write = Some(match input.existing {
                // An ESO Secret this SecretRef opted in to adopt: one patch that swaps ESO's
                // marks for ours along with the data (server-side apply cannot remove ESO's).
                Some(existing) if !input.owner.owns(existing) && input.owner.adopts(existing) => {
                    Write::Adopt {
                        name: tname.clone(),
                        patch: target::adoption_patch(existing, &object),
                    }
                }
                _ => Write::Apply {
                    object: Box::new(object),
                    field_manager: target::field_manager(creation, &sref.name_any()),
                },
            });
            out.audit.push(AuditNote {
                action: "write",
                outcome: "success",
                remote_key: None,
                target: Some(format!("{ns}/{tname}")),
                hmac: Some(desired.data_hmac.clone()),
            });
        }
        Decision::NoChange | Decision::DriftKept { .. } => {}
    }

    let mut st = old.clone();
    st.observed_generation = generation;
    st.target_name = Some(tname.clone());
    st.not_found = None;
    if let Some(f) = input.forced {
        st.last_force_sync = Some(f.to_string());
    }
    let first_sync = old.data_hmac.is_none();
    let changed = last_synced.as_deref() != Some(desired.data_hmac.as_str());
    if changed {
        st.last_changed_time = Some(api::time(now));
        if !first_sync {
            st.last_rotation_time = Some(api::time(now));
        }
    }
    st.data_hmac = Some(desired.data_hmac.clone());
    st.synced_keys = desired.synced_keys.clone();
    st.expires_at = desired.expires_at.map(api::time);
    let expiring = expiry_warning(sref, desired.expires_at, now);
    match &expiring {
        Some(msg) => cond::set_condition(
            &mut st.conditions,
            cond::EXPIRING,
            true,
            Reason::Expiring,
            msg,
            generation,
            now,
        ),
        None => cond::clear_condition(&mut st.conditions, cond::EXPIRING),
    }
    let drift_note =
        format!("Secret {tname:?} was edited outside secretsync; driftPolicy Alert keeps the edit");
    match &decision {
        Decision::DriftKept { policy, .. } if *policy == api::DriftPolicy::Alert => {
            cond::set_condition(
                &mut st.conditions,
                cond::DRIFTED,
                true,
                Reason::Drifted,
                &drift_note,
                generation,
                now,
            );
        }
        _ => cond::clear_condition(&mut st.conditions, cond::DRIFTED),
    }
    match &decision {
        // Ready is never True with a synced key missing (DESIGN §2.2), whatever the drift policy.
        Decision::DriftKept { policy, missing } if !missing.is_empty() => cond::set_condition(
            &mut st.conditions,
            cond::READY,
            false,
            Reason::Drifted,
            &format!(
                "Secret {tname:?} lacks key(s) {} that this SecretRef syncs: it was edited outside secretsync and driftPolicy {policy:?} keeps the edit; restore the key(s) or set driftPolicy: Revert",
                missing.join(", ")
            ),
            generation,
            now,
        ),
        _ => cond::set_condition(
            &mut st.conditions,
            cond::READY,
            true,
            Reason::Synced,
            &format!(
                "Secret {tname:?} holds {} key(s) from {} {store:?}",
                desired.data.len(),
                match store_kind {
                    StoreKind::SecretStore => "SecretStore",
                    StoreKind::ClusterSecretStore => "ClusterSecretStore",
                }
            ),
            generation,
            now,
        ),
    }

    // Events: only on real changes.
    match &decision {
        Decision::Create | Decision::Update { .. } if first_sync => out.events.push(Note {
            warning: false,
            reason: Reason::Synced,
            action: "Sync",
            note: format!("Secret {tname:?} synced with {} key(s)", desired.data.len()),
        }),
        // Create after the first sync: the Secret was deleted meanwhile, and its data changed.
        // NoChange with new data: the Secret was written but the status write after it failed (a
        // lost race, a crash). Announced here unless this process already did.
        Decision::Create | Decision::Update { rotation: true, .. } | Decision::NoChange
            if changed
                && !first_sync
                && !(matches!(decision, Decision::NoChange)
                    && input.announced == rotation_id(&desired.data_hmac)) =>
        {
            out.rotation = Some(Rotation {
                id: rotation_id(&desired.data_hmac),
                data_hmac: desired.data_hmac.clone(),
                secret: tname.clone(),
            });
            out.events.push(Note {
                warning: false,
                reason: Reason::Rotated,
                action: "Rotate",
                note: rotation_note(&tname, old, desired),
            });
        }
        Decision::Update { drift: true, .. } => out.events.push(Note {
            warning: false,
            reason: Reason::DriftReverted,
            action: "Revert",
            note: format!(
                "Secret {tname:?} was edited outside secretsync; restored the synced data"
            ),
        }),
        Decision::DriftKept {
            policy: api::DriftPolicy::Alert,
            ..
        } if cond::condition(&old.conditions, cond::DRIFTED).is_none() => out.events.push(Note {
            warning: true,
            reason: Reason::Drifted,
            action: "Detect",
            note: drift_note,
        }),
        _ => {}
    }
    if let Some(msg) = &expiring
        && cond::condition(&old.conditions, cond::EXPIRING).is_none_or(|c| c.message != *msg)
    {
        out.events.push(Note {
            warning: true,
            reason: Reason::Expiring,
            action: "Expire",
            note: msg.clone(),
        });
    }
    out.status = st;
    out
}
