//! The reconciler: resolve store → fetch → build the desired Secret → ownership/drift decision →
//! server-side apply → status and events (only on change).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, instrument, warn};

use super::context::Context;
use super::desired::{self, Answers, BuildError, DesiredSecret};
use super::stores::{Resolved, StoreError, kube_error_summary};
use super::target::{self, Decision};
use super::{fold, schedule, status as cond};
use crate::api::{
    self, CreationPolicy, DeletionPolicy, SecretRef, SecretRefStatus, duration, validation,
};
use crate::providers::{ProviderError, RemoteRef};

/// Failures of one reconcile. Each has a stable [`Error::reason`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(String),
    /// The provider failed.
    #[error("store {store:?}: {source}")]
    Provider {
        /// The store.
        store: String,
        /// The classified failure.
        source: ProviderError,
    },
    /// The store cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The desired Secret cannot be built (bad input).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// This replica lost (or does not hold) the leader lease: it must not write.
    #[error("not the leader; writes are left to the lease holder")]
    NotLeader,
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// A write lost an optimistic-concurrency race (409 Conflict, or the finalizer patch's `test`
    /// failing because someone changed the object first): retried within a fraction of a second
    /// against the newer version, not backed off like a failure.
    #[error("Kubernetes API conflict: {0}")]
    Conflict(String),
}

impl Error {
    /// Stable category: condition reason, event reason, metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube(_) | Self::Conflict(_) => "KubernetesError",
            Self::Provider { source, .. } => source.reason(),
            Self::Store(e) => e.reason(),
            Self::Build(e) => e.reason,
            Self::Finalizer(_) => "FinalizerError",
            Self::NotLeader => "NotLeader",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Provider { source, .. } => source.retry_after(),
            _ => None,
        }
    }
}

fn kube_err(e: kube::Error) -> Error {
    match &e {
        kube::Error::Api(s) if s.code == 409 => Error::Conflict(kube_error_summary(&e)),
        _ => Error::Kube(kube_error_summary(&e)),
    }
}

/// The finalizer helper's own API failures. Its patches carry a JSON-patch `test` of the
/// finalizer list, which the API server refuses (422) when the list changed since our copy — as
/// when the fast lane and the queue both add the finalizer to a new SecretRef.
fn finalizer_err(e: &kube::Error) -> Error {
    match e {
        kube::Error::Api(s) if s.code == 409 || s.code == 422 => {
            Error::Conflict(format!("finalizer: {}", kube_error_summary(e)))
        }
        other => Error::Finalizer(kube_error_summary(other)),
    }
}

/// Entry point for the kube-rs controller.
#[instrument(skip(sref, ctx), fields(namespace = sref.namespace().unwrap_or_default(), name = sref.name_any()))]
pub async fn reconcile(sref: Arc<SecretRef>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer();
    let sref_key = ctx.key_of(&sref);
    let seed = sref.uid().unwrap_or_default();
    let ns = sref.namespace().unwrap_or_default();
    let api: Api<SecretRef> = Api::namespaced(ctx.client.clone(), &ns);
    let res = finalizer(&api, api::FINALIZER, sref, |event| async {
        match event {
            Finalizer::Apply(s) => apply(s, ctx.clone()).await,
            Finalizer::Cleanup(s) => cleanup(s, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        kube::runtime::finalizer::Error::AddFinalizer(e)
        | kube::runtime::finalizer::Error::RemoveFinalizer(e) => finalizer_err(&e),
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics.set_audit_errors(ctx.audit.errors());
    ctx.metrics.reconciled(
        res.as_ref()
            .map(|_| "success")
            .unwrap_or_else(|e| e.reason()),
    );
    if let Err(e) = &res {
        // Recorded before the runtime sees the error: a reconcile woken by our own status write
        // (queued behind this one) already finds the backoff step in place.
        record_failure(&ctx, &sref_key, &seed, e);
    }
    res
}

/// Counts a failure and starts its backoff step: exponential with jitter, capped at 5 minutes (a
/// lost write race has its own short backoff). The refresh slot stays scheduled, so a failing
/// SecretRef still refreshes on its slot (the reads that count toward `deletionPolicy: Delete`).
fn record_failure(ctx: &Context, key: &str, seed: &str, err: &Error) {
    if matches!(err, Error::NotLeader) {
        return;
    }
    let conflict = matches!(err, Error::Conflict(_));
    let now = tokio::time::Instant::now();
    let (failures, d) = ctx.with_state(key, |s| {
        let failures = if conflict {
            s.conflicts = s.conflicts.saturating_add(1);
            u32::from(s.conflicts)
        } else {
            s.failures = s.failures.saturating_add(1);
            u32::from(s.failures)
        };
        let d = if conflict {
            schedule::conflict_backoff(failures, seed)
        } else {
            schedule::backoff(failures, seed, err.retry_after())
        };
        s.next_retry = Some(now + d);
        (failures, d)
    });
    debug!(reason = err.reason(), error = %err, failures, backoff_ms = d.as_millis() as u64, "reconcile failed");
}

/// A short, non-zero identity of a data HMAC for [`super::context::RefState::announced`].
fn announce_id(data_hmac: &str) -> u32 {
    (schedule::stable_hash(data_hmac) as u32).max(1)
}

/// Requeue policy after an error: at the end of the backoff step [`reconcile`] started, or at the
/// refresh slot if that comes first.
pub fn error_policy(sref: Arc<SecretRef>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = ctx.key_of(&sref);
    if matches!(err, Error::Provider { source, .. } if source.is_retryable()) {
        ctx.note_failing(&sref);
    }
    let now = tokio::time::Instant::now();
    let at = ctx.with_state(&key, |s| match (s.next_retry, s.next_refresh) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    });
    Action::requeue(at.map_or(schedule::BASE_BACKOFF, |t| {
        t.saturating_duration_since(now)
            .max(Duration::from_millis(10))
    }))
}

fn refresh_interval(sref: &SecretRef, store: Option<&Resolved>, ctx: &Context) -> Duration {
    sref.spec
        .refresh_interval
        .as_deref()
        .and_then(|s| duration::parse(s).ok())
        .or_else(|| store.and_then(|s| s.refresh_interval))
        .unwrap_or(ctx.settings.default_refresh_interval)
}

fn target_name(sref: &SecretRef) -> String {
    sref.spec
        .target
        .as_ref()
        .and_then(|t| t.name.clone())
        .unwrap_or_else(|| sref.name_any())
}

/// How this SecretRef recognises its Secret `target` (DESIGN §2.4): the ownership proof made with
/// its namespace's key over its uid, or — for a Secret written before proofs existed — the labels
/// together with a sync of that Secret recorded in `status`.
fn ownership(
    ctx: &Context,
    sref: &SecretRef,
    status: &SecretRefStatus,
    target: &str,
) -> target::Ownership {
    let ns = sref.namespace().unwrap_or_default();
    let name = sref.name_any();
    target::Ownership {
        proof: Some(ctx.ns_hmac(&ns).ownership_proof(
            &ns,
            target,
            &name,
            &sref.uid().unwrap_or_default(),
        )),
        sref_name: name,
        claimed_in_status: status.target_name.as_deref() == Some(target)
            && status.data_hmac.is_some(),
    }
}

/// Delete options that delete exactly the Secret decided on: a uid and resourceVersion
/// precondition, so a Secret replaced meanwhile (same name, another object) is never deleted.
fn delete_exactly(secret: &Secret) -> kube::api::DeleteParams {
    kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: secret.uid(),
            resource_version: secret.resource_version(),
        }),
        ..Default::default()
    }
}

async fn apply(sref: Arc<SecretRef>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = sref.namespace().unwrap_or_default();
    let name = sref.name_any();
    let key = ctx.key_of(&sref);
    let generation = sref.metadata.generation;
    // While the watch still shows the version we last wrote status over, our write is the truth;
    // once it shows another version, that one carries our write (or a later one): forget ours.
    let rv = sref.resource_version();
    let old_status = ctx
        .with_state(&key, |s| match s.written.as_deref() {
            Some((w_rv, st)) if rv.as_ref() == Some(w_rv) => Some(st.clone()),
            _ => {
                s.written = None;
                None
            }
        })
        .unwrap_or_else(|| sref.status.clone().unwrap_or_default());

    if sref
        .annotations()
        .get(api::PAUSED_ANNOTATION)
        .map(String::as_str)
        == Some("true")
    {
        let mut st = old_status.clone();
        cond::set_condition(
            &mut st.conditions,
            cond::READY,
            false,
            "Paused",
            "writes are paused by the secretsync.io/paused annotation",
            generation,
            Utc::now(),
        );
        st.observed_generation = generation;
        write_status(&ctx, &sref, &old_status, st).await?;
        return Ok(Action::await_change());
    }

    // Bad input: the condition names the field; nothing is written.
    if let Some(first) = validation::validate_secretref(&sref.spec)
        .into_iter()
        .next()
    {
        let e = Error::Build(BuildError {
            reason: "InvalidSpec",
            field: first.field,
            message: first.message,
        });
        fail(&ctx, &sref, &old_status, &e).await?;
        return Ok(Action::await_change());
    }

    // A new value of the force-sync annotation refreshes at once, bypassing every cache and backoff.
    let force = sref.annotations().get(api::FORCE_SYNC_ANNOTATION).cloned();
    let forced = force.is_some() && force != old_status.last_force_sync;
    // A new or changed SecretRef re-reads the store's external inputs (credentials, file store document).
    let spec_changed = old_status.observed_generation != generation;
    let store = match ctx.stores.resolve(&sref, spec_changed || forced).await {
        Ok(s) => s,
        Err(e) => {
            if e.is_denial() {
                ctx.audit
                    .record(audit_record(&ctx, &sref, None, "deny", e.reason()));
            }
            let e = Error::Store(e);
            fail(&ctx, &sref, &old_status, &e).await?;
            return Err(e);
        }
    };
    let interval = refresh_interval(&sref, Some(&store), &ctx);
    let tname = target_name(&sref);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = secrets.get_opt(&tname).await.map_err(kube_err)?;
    let creation = sref.spec.creation_policy();
    let drift_policy = sref.spec.drift_policy();

    // Nothing to do before the object's refresh slot if the Secret provably holds what we last synced
    // for this generation: no provider call and no write (cold starts cost no provider storm).
    let store_changed = ctx.with_state(&key, |s| {
        s.store_id.as_ref().is_some_and(|id| *id != store.handle.id)
    });
    let due = store_changed
        || ctx.with_state(&key, |s| {
            s.next_refresh
                .is_some_and(|t| tokio::time::Instant::now() >= t)
        });
    let synced_before = old_status.observed_generation == generation
        && cond::ready(Some(&old_status)).is_some_and(|(ok, _)| ok)
        && old_status.target_name.as_deref() == Some(tname.as_str());
    let in_sync = synced_before
        && existing.as_ref().is_some_and(|s| {
            secret_matches_status(
                s,
                &old_status,
                &ownership(&ctx, &sref, &old_status, &tname),
                creation,
                &ctx,
            )
        });
    if in_sync && !due && !forced {
        // Verified without a provider call: count it as Ready (after a restart, the gauge would
        // otherwise stay empty until each SecretRef's first refresh).
        ctx.metrics.set_secretref_state(
            &key,
            Some(true),
            old_status
                .expires_at
                .as_ref()
                .map(|t| api::from_time(t).timestamp()),
        );
        return Ok(schedule_next(&ctx, &sref, &key, interval));
    }

    // At most one provider read per refresh slot or backoff step: a reconcile woken by anything
    // else — our own status write above all — waits, unless there is a reason to read now.
    let gate = ctx.with_state(&key, |s| {
        let reasons = schedule::ReadReasons {
            forced,
            spec_changed: s.read_generation != generation || generation.is_none(),
            store_changed,
            woken: std::mem::take(&mut s.woken),
            target_changed: synced_before && !in_sync,
        };
        let gate = schedule::read_gate(
            tokio::time::Instant::now(),
            s.next_refresh,
            s.next_retry,
            reasons,
        );
        if matches!(gate, schedule::ReadGate::Read { .. }) {
            s.read_generation = generation;
        }
        gate
    });
    let scheduled = match gate {
        schedule::ReadGate::Wait(d) => return Ok(Action::requeue(d)),
        schedule::ReadGate::Read { scheduled } => scheduled,
    };
    // A changed target Secret is restored from the answers of this refresh cycle.
    let target_changed = synced_before && !in_sync;

    // Fetch everything the SecretRef needs; any failure leaves the Secret untouched.
    let max_age = if forced {
        Duration::ZERO
    } else if due || target_changed {
        // Answers read by other SecretRefs earlier in this cycle are shared (one provider read per key
        // per cycle); 0.95 rather than 1 so a SecretRef never reuses its own previous read.
        interval.mul_f64(0.95)
    } else {
        Duration::from_secs(5)
    };
    let answers = match fetch_all(&ctx, &sref, &store, max_age).await {
        Ok(a) => a,
        Err((e, all_not_found)) => {
            if let Error::Store(StoreError::KeyNotAllowed { key, .. }) = &e {
                let mut rec = audit_record(&ctx, &sref, Some(&store), "deny", e.reason());
                rec.remote_key = Some(key.clone());
                ctx.audit.record(rec);
            }
            handle_fetch_failure(
                &ctx,
                &sref,
                &old_status,
                existing.as_ref(),
                &e,
                all_not_found,
                scheduled,
            )
            .await?;
            return Err(e);
        }
    };
    // The store answers: SecretRefs backing off from its earlier failures retry now.
    ctx.wake_store(&Context::store_key(&sref));
    let nskey = ctx.ns_hmac(&ns);
    let desired = match desired::build(&name, &sref.spec, &answers, &nskey) {
        Ok(d) => d,
        Err(e) => {
            let e = Error::Build(e);
            fail(&ctx, &sref, &old_status, &e).await?;
            return Err(e);
        }
    };

    // After an upgrade from one cluster-wide HMAC key, status still holds that key's HMACs: the same
    // data under the old key is a re-key (written once, no rotation, no restart), not a change.
    let last_synced: Option<String> = match old_status.data_hmac.as_deref() {
        Some(h) if h != desired.data_hmac && h == ctx.hmac.data_hmac(&desired.data) => {
            Some(desired.data_hmac.clone())
        }
        other => other.map(str::to_string),
    };
    let owner = ownership(&ctx, &sref, &old_status, &tname);
    let decision = target::decide(
        existing.as_ref(),
        &desired,
        &owner,
        creation,
        drift_policy,
        last_synced.as_deref(),
        &nskey,
    );
    let now = Utc::now();
    let mut st = old_status.clone();
    st.observed_generation = generation;
    st.target_name = Some(tname.clone());
    st.not_found = None;
    match &decision {
        Decision::Refused { reason, message } => {
            let e = Error::Build(BuildError {
                reason,
                field: "spec.target.name".into(),
                message: message.clone(),
            });
            fail(&ctx, &sref, &old_status, &e).await?;
            return Err(e);
        }
        Decision::Create | Decision::Update { .. } => {
            if !ctx.may_write() {
                return Err(Error::NotLeader);
            }
            // Only the Secret decided on: a Secret that appeared after the read is never
            // overwritten by a create, nor one changed since the read by an update (409, then the
            // next reconcile decides again).
            let precondition = match &decision {
                Decision::Create => Some(target::CREATE_ONLY.to_string()),
                _ => existing.as_ref().and_then(|s| s.resource_version()),
            };
            let obj =
                target::apply_object(&desired, &ns, &owner, creation, precondition.as_deref());
            let pp = PatchParams::apply(&target::field_manager(creation, &name)).force();
            secrets
                .patch(&tname, &pp, &Patch::Apply(&obj))
                .await
                .map_err(kube_err)?;
            ctx.metrics.secret_written();
            let mut rec = audit_record(&ctx, &sref, Some(&store), "write", "success");
            rec.target = Some(format!("{ns}/{tname}"));
            rec.hmac = Some(desired.data_hmac.clone());
            ctx.audit.record(rec);
        }
        Decision::NoChange | Decision::DriftKept { .. } => {}
    }
    if forced {
        st.last_force_sync = force.clone();
    }

    let first_sync = old_status.data_hmac.is_none();
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
    let expiring = expiry_warning(&sref, desired.expires_at, now);
    match &expiring {
        Some(msg) => cond::set_condition(
            &mut st.conditions,
            cond::EXPIRING,
            true,
            "Expiring",
            msg,
            generation,
            now,
        ),
        None => cond::clear_condition(&mut st.conditions, cond::EXPIRING),
    }
    match &decision {
        Decision::DriftKept { policy, .. } if *policy == api::DriftPolicy::Alert => {
            cond::set_condition(
                &mut st.conditions,
                cond::DRIFTED,
                true,
                "Drifted",
                &format!(
                    "Secret {tname:?} was edited outside secretsync; driftPolicy Alert keeps the edit"
                ),
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
            "Drifted",
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
            "Synced",
            &format!(
                "Secret {tname:?} holds {} key(s) from {} {:?}",
                desired.data.len(),
                kind_name(store.kind),
                store.name
            ),
            generation,
            now,
        ),
    }

    // Events: only on real changes.
    match &decision {
        Decision::Create | Decision::Update { .. } if first_sync => {
            publish(
                &ctx,
                &sref,
                EventType::Normal,
                "Synced",
                "Sync",
                format!("Secret {tname:?} synced with {} key(s)", desired.data.len()),
            )
            .await;
        }
        // NoChange with new data: the Secret was written but the status write after it failed (a
        // lost race, a crash). Announced here unless this process already did.
        Decision::Update { rotation: true, .. } | Decision::NoChange
            if changed
                && !first_sync
                && !(matches!(decision, Decision::NoChange)
                    && ctx.with_state(&key, |s| s.announced)
                        == announce_id(&desired.data_hmac)) =>
        {
            ctx.with_state(&key, |s| s.announced = announce_id(&desired.data_hmac));
            ctx.metrics.rotated();
            publish(
                &ctx,
                &sref,
                EventType::Normal,
                "Rotated",
                "Rotate",
                rotation_note(&tname, &old_status, &desired),
            )
            .await;
            info!(secret = %tname, "data rotated");
            schedule_restarts(&ctx, &sref, &tname, &desired.data_hmac).await;
        }
        Decision::Update { drift: true, .. } => {
            publish(
                &ctx,
                &sref,
                EventType::Normal,
                "DriftReverted",
                "Revert",
                format!("Secret {tname:?} was edited outside secretsync; restored the synced data"),
            )
            .await;
        }
        Decision::DriftKept {
            policy: api::DriftPolicy::Alert,
            ..
        } if cond::condition(&old_status.conditions, cond::DRIFTED).is_none() => {
            publish(&ctx, &sref, EventType::Warning, "Drifted", "Detect", format!("Secret {tname:?} was edited outside secretsync; driftPolicy Alert keeps the edit")).await;
        }
        _ => {}
    }
    if let Some(msg) = &expiring
        && cond::condition(&old_status.conditions, cond::EXPIRING).is_none_or(|c| c.message != *msg)
    {
        publish(
            &ctx,
            &sref,
            EventType::Warning,
            "Expiring",
            "Expire",
            msg.clone(),
        )
        .await;
    }
    write_status(&ctx, &sref, &old_status, st).await?;
    ctx.metrics
        .set_secretref_state(&key, Some(true), desired.expires_at.map(|e| e.timestamp()));
    ctx.with_state(&key, |s| {
        s.failures = 0;
        s.conflicts = 0;
        s.next_retry = None;
        s.wake_spent = false;
        s.store_id = Some(store.handle.id.clone());
    });
    Ok(schedule_next(&ctx, &sref, &key, interval))
}

/// The `Expiring` message when a provider-reported expiry is within `expiry.warnBefore` (pure).
pub fn expiry_warning(
    sref: &SecretRef,
    expires: Option<chrono::DateTime<Utc>>,
    now: chrono::DateTime<Utc>,
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

/// Queues restarts of the workloads named in `rotation.restart` and, with `auto`, of every workload
/// of the namespace whose pod template uses the Secret.
async fn schedule_restarts(ctx: &Context, sref: &SecretRef, secret: &str, hmac: &str) {
    let Some(spec) = sref.spec.rotation.as_ref().and_then(|r| r.restart.as_ref()) else {
        return;
    };
    let ns = sref.namespace().unwrap_or_default();
    let mut targets: Vec<(api::WorkloadKind, String)> = spec
        .targets
        .iter()
        .map(|t| (t.kind, t.name.clone()))
        .collect();
    if spec.auto == Some(true) {
        match ctx.restarter.discover(&ns, secret).await {
            Ok(found) => targets.extend(found),
            Err(e) => {
                warn!(error = %kube_error_summary(&e), "listing workloads for automatic restarts failed")
            }
        }
    }
    targets.sort();
    targets.dedup();
    if !targets.is_empty() {
        ctx.restarter
            .schedule(&ns, &targets, secret, hmac, sref.object_ref(&()));
    }
}

/// An audit record about `sref` (the caller fills key, version and HMAC).
fn audit_record(
    ctx: &Context,
    sref: &SecretRef,
    store: Option<&Resolved>,
    action: &str,
    outcome: &str,
) -> crate::audit::trail::Record {
    let ns = sref.namespace().unwrap_or_default();
    crate::audit::trail::Record {
        ts: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        actor: ctx.actor(),
        action: action.into(),
        outcome: outcome.into(),
        secret_ref: Some(format!("{ns}/{}", sref.name_any())),
        store: Some(match store {
            Some(s) if s.kind == api::StoreKind::ClusterSecretStore => {
                format!("ClusterSecretStore/{}", s.name)
            }
            Some(s) => format!("SecretStore/{ns}/{}", s.name),
            None => format!(
                "{}/{}",
                kind_name(sref.spec.store_ref.kind.unwrap_or_default()),
                sref.spec.store_ref.name
            ),
        }),
        provider: store.map(|s| s.handle.provider.kind().as_str().to_string()),
        ..Default::default()
    }
}

fn kind_name(k: api::StoreKind) -> &'static str {
    match k {
        api::StoreKind::SecretStore => "SecretStore",
        api::StoreKind::ClusterSecretStore => "ClusterSecretStore",
    }
}

fn rotation_note(tname: &str, old: &SecretRefStatus, desired: &DesiredSecret) -> String {
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
    let removed: Vec<&str> = old
        .synced_keys
        .iter()
        .map(|k| k.secret_key.as_str())
        .filter(|k| !desired.data.contains_key(*k))
        .collect();
    // Counts first, then as many names as the event note has room for (DESIGN §2.10).
    let budget = super::events::NOTE_LIMIT - 200 - tname.len();
    let mut note = format!(
        "Secret {tname:?} rotated: {} key(s) changed{}",
        changed.len(),
        if changed.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                super::events::summarize(
                    &changed,
                    if removed.is_empty() {
                        budget
                    } else {
                        budget / 2
                    }
                )
            )
        }
    );
    if !removed.is_empty() {
        let removed: Vec<String> = removed.iter().map(|k| k.to_string()).collect();
        note.push_str(&format!(
            "; {} key(s) removed: {}",
            removed.len(),
            super::events::summarize(&removed, budget / 2)
        ));
    }
    note
}

/// Whether the Secret holds exactly the data recorded in status (no provider call needed).
fn secret_matches_status(
    secret: &Secret,
    st: &SecretRefStatus,
    owner: &target::Ownership,
    creation: CreationPolicy,
    ctx: &Context,
) -> bool {
    let Some(want) = st.data_hmac.as_deref() else {
        return false;
    };
    if creation != CreationPolicy::Merge && !owner.owns(secret) {
        return false;
    }
    let Some(data) = secret.data.as_ref() else {
        return false;
    };
    let values: Option<Vec<(&str, crate::value::SecretBytes)>> = st
        .synced_keys
        .iter()
        .map(|k| {
            data.get(&k.secret_key).map(|v| {
                (
                    k.secret_key.as_str(),
                    crate::value::SecretBytes::new(v.0.clone()),
                )
            })
        })
        .collect();
    let Some(values) = values else {
        return false;
    };
    let data_hmac = |key: &crate::audit::HmacKey| {
        let per_key: Vec<(&str, String)> = values
            .iter()
            .map(|(k, v)| (*k, key.key_hmac(k, v)))
            .collect();
        key.data_hmac_from_keys(per_key.iter().map(|(k, h)| (*k, h.as_str())))
    };
    // The namespace's key, or — until its next refresh re-keys it — the cluster-wide key an
    // earlier version wrote status with.
    data_hmac(&ctx.ns_hmac(&secret.namespace().unwrap_or_default())) == want
        || data_hmac(&ctx.hmac) == want
}

fn schedule_next(ctx: &Context, sref: &SecretRef, key: &str, interval: Duration) -> Action {
    if interval.is_zero() {
        ctx.with_state(key, |s| s.next_refresh = None);
        return Action::await_change();
    }
    let now_ms = Utc::now().timestamp_millis().max(0) as u64;
    let wait = schedule::until_next_refresh(now_ms, &sref.uid().unwrap_or_default(), interval);
    ctx.with_state(key, |s| {
        s.next_refresh =
            Some(tokio::time::Instant::now() + wait - Duration::from_millis(50).min(wait))
    });
    Action::requeue(wait)
}

/// Reads sent at once by one reconcile (more for providers that batch, see [`fetch_all`]).
const READ_PART: usize = 4;

/// The reads of one reconcile. `Err((e, true))`: every read said not found (counts toward deletion);
/// store denials and search failures never do.
async fn fetch_all(
    ctx: &Context,
    sref: &SecretRef,
    store: &Resolved,
    max_age: Duration,
) -> Result<Answers, (Error, bool)> {
    let ns = sref.namespace().unwrap_or_default();
    let plan = desired::plan(&sref.spec);
    let no_count = |e: Error| (e, false);
    let perr = |source: ProviderError| Error::Provider {
        store: store.name.clone(),
        source,
    };
    let mut answers = Answers::default();
    let mut reads = plan.reads.clone();
    for (i, q) in &plan.finds {
        if let Some(p) = &q.path {
            store.check_key(&ns, p).map_err(|e| no_count(e.into()))?;
        } else if store
            .admitting
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| !c.allowed_key_prefixes.is_empty()))
        {
            store.check_key(&ns, "").map_err(|e| no_count(e.into()))?;
        }
        let keys = ctx
            .fetcher
            .find(&store.handle, q)
            .await
            .map_err(|e| no_count(perr(e)))?;
        for k in &keys {
            store.check_key(&ns, k).map_err(|e| no_count(e.into()))?;
            let r = RemoteRef::latest(k.clone());
            if !reads.contains(&r) {
                reads.push(r);
            }
        }
        answers.found.insert(*i, keys);
    }
    for r in &reads {
        store
            .check_key(&ns, &r.key)
            .map_err(|e| no_count(e.into()))?;
    }
    // Read in parts and stop once the answers pass the Secret limit (DESIGN §2.8): a SecretRef
    // naming many large values never makes the controller hold much more than the limit.
    let part = store.handle.provider.max_batch().max(READ_PART);
    let mut results = Vec::with_capacity(reads.len());
    let mut total = 0usize;
    for chunk in reads.chunks(part) {
        if total > api::MAX_SECRET_BYTES {
            results.extend(chunk.iter().map(|r| {
                Err(ProviderError::TooLarge {
                    key: Some(r.key.clone()),
                    limit: api::MAX_SECRET_BYTES,
                })
            }));
            continue;
        }
        let answers = ctx.fetcher.get_many(&store.handle, chunk, max_age).await;
        total += answers
            .iter()
            .filter_map(|a| a.as_ref().ok())
            .map(|v| v.value.len())
            .sum::<usize>();
        results.extend(answers);
    }
    for (r, res) in reads.iter().zip(&results) {
        let mut rec = audit_record(
            ctx,
            sref,
            Some(store),
            "read",
            res.as_ref()
                .map(|_| "success")
                .unwrap_or_else(|e| e.reason()),
        );
        rec.remote_key = Some(r.key.clone());
        match res {
            Ok(v) => {
                rec.version = v.meta.version.clone();
                rec.hmac = Some(ctx.hmac.key_hmac(&r.key, &v.value));
            }
            Err(e) => {
                rec.version = r.version.clone();
                if matches!(e, ProviderError::Throttled { .. }) {
                    ctx.metrics.throttled();
                }
            }
        }
        ctx.audit.record(rec);
        ctx.metrics.provider_read(
            store.handle.provider.kind().as_str(),
            res.as_ref()
                .map(|_| "success")
                .unwrap_or_else(|e| e.reason()),
        );
    }
    // Complete answers only; the most telling error otherwise (deletion needs all-not-found).
    match fold::fold_reads(reads.into_iter().zip(results)) {
        Ok(values) => {
            answers.values = values;
            Ok(answers)
        }
        Err(f) => Err((perr(f.error), f.all_not_found)),
    }
}

/// A provider failure: keep the Secret, record the failure; for `deletionPolicy: Delete` count
/// authoritative not-founds and delete only after three in a row spanning at least ten minutes.
#[allow(clippy::too_many_arguments)]
async fn handle_fetch_failure(
    ctx: &Context,
    sref: &SecretRef,
    old: &SecretRefStatus,
    existing: Option<&Secret>,
    e: &Error,
    all_not_found: bool,
    scheduled: bool,
) -> Result<(), Error> {
    if !ctx.may_write() {
        return Ok(());
    }
    ctx.metrics
        .set_secretref_state(&ctx.key_of(sref), Some(false), None);
    let delete_policy = sref.spec.deletion_policy() == DeletionPolicy::Delete;
    let now = Utc::now();
    // A spec change starts the streak afresh.
    let streak = old
        .not_found
        .as_ref()
        .filter(|_| old.observed_generation == sref.metadata.generation);
    let step = fold::not_found_step(
        streak,
        fold::NotFoundAnswer::of(delete_policy && all_not_found, scheduled),
        now,
    );
    let Some(rec) = step.record else {
        return fail(ctx, sref, old, e).await;
    };
    if step.delete
        && let Some(secret) = existing
        && ownership(ctx, sref, old, &secret.name_any()).owns(secret)
    {
        if !ctx.may_write() {
            return Err(Error::NotLeader);
        }
        let tname = secret.name_any();
        let secrets: Api<Secret> =
            Api::namespaced(ctx.client.clone(), &sref.namespace().unwrap_or_default());
        secrets
            .delete(&tname, &delete_exactly(secret))
            .await
            .map_err(kube_err)?;
        let mut arec = audit_record(ctx, sref, None, "delete", "success");
        arec.target = Some(format!("{}/{tname}", sref.namespace().unwrap_or_default()));
        ctx.audit.record(arec);
        publish(ctx, sref, EventType::Warning, "SecretDeleted", "Delete", format!("remote data is gone (not found {} times since {}); deleted Secret {tname:?} per deletionPolicy Delete", rec.count, api::from_time(&rec.since).to_rfc3339())).await;
    }
    let mut st = old.clone();
    st.not_found = Some(rec);
    cond::set_condition(
        &mut st.conditions,
        cond::READY,
        false,
        e.reason(),
        &e.to_string(),
        sref.metadata.generation,
        now,
    );
    if cond::ready(Some(old)).map(|(_, r)| r) != Some(e.reason().to_string()) {
        publish(
            ctx,
            sref,
            EventType::Warning,
            "SyncFailed",
            "Sync",
            e.to_string(),
        )
        .await;
    }
    write_status(ctx, sref, old, st).await
}

/// Records a failure: `Ready=False` with the error's reason; a Warning event when the reason changes.
async fn fail(
    ctx: &Context,
    sref: &SecretRef,
    old: &SecretRefStatus,
    e: &Error,
) -> Result<(), Error> {
    let mut st = old.clone();
    // Any failure other than a counted not-found streak (handle_fetch_failure) breaks the streak.
    st.not_found = None;
    if let Some(outcome) = audited_refusal(e) {
        ctx.audit
            .record(audit_record(ctx, sref, None, "deny", outcome));
    }
    cond::set_condition(
        &mut st.conditions,
        cond::READY,
        false,
        e.reason(),
        &e.to_string(),
        sref.metadata.generation,
        Utc::now(),
    );
    if matches!(e, Error::Build(_) | Error::Store(_)) {
        st.observed_generation = sref.metadata.generation;
    }
    let old_reason = cond::ready(Some(old)).map(|(_, r)| r);
    if old_reason.as_deref() != Some(e.reason()) {
        let reason = match e {
            Error::Provider {
                source: ProviderError::AccessDenied { .. },
                ..
            } => "AccessDenied",
            Error::Store(s) if s.is_denial() => "AccessDenied",
            Error::Build(b) if b.reason == "TargetConflict" => "TargetConflict",
            _ => "SyncFailed",
        };
        publish(ctx, sref, EventType::Warning, reason, "Sync", e.to_string()).await;
        warn!(reason = e.reason(), error = %e, "sync failed");
    }
    write_status(ctx, sref, old, st).await
}

/// Refusals that go to the audit trail as `deny` records besides the tenancy denials (which are
/// recorded where they are detected, with the refused key): a store that is not in the SecretRef's
/// namespace, a spec or template the controller refuses, a target Secret it must not write.
fn audited_refusal(e: &Error) -> Option<&'static str> {
    match e {
        Error::Store(s @ (StoreError::NotFound { .. } | StoreError::InvalidConfig { .. })) => {
            Some(s.reason())
        }
        Error::Build(b)
            if matches!(
                b.reason,
                "InvalidSpec" | "TemplateFailed" | "TargetConflict" | "TargetTypeMismatch"
            ) =>
        {
            Some(b.reason)
        }
        _ => None,
    }
}

/// Writes status only if it differs from what is stored (no timestamp-only writes).
async fn write_status(
    ctx: &Context,
    sref: &SecretRef,
    old: &SecretRefStatus,
    new: SecretRefStatus,
) -> Result<(), Error> {
    if &new == old || !ctx.may_write() {
        return Ok(());
    }
    let api: Api<SecretRef> =
        Api::namespaced(ctx.client.clone(), &sref.namespace().unwrap_or_default());
    let patch = json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretRef", "status": new});
    api.patch_status(
        &sref.name_any(),
        &PatchParams::apply(api::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(kube_err)?;
    ctx.metrics.status_written();
    if let Some(rv) = sref.resource_version() {
        ctx.with_state(&ctx.key_of(sref), |s| s.written = Some(Box::new((rv, new))));
    }
    Ok(())
}

async fn publish(
    ctx: &Context,
    sref: &SecretRef,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    if !ctx.may_write() {
        return;
    }
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    super::events::publish(&ctx.recorder(), &ctx.metrics, &ev, &sref.object_ref(&())).await;
}

/// The SecretRef goes. `Delete`: its Secret goes with it. Otherwise the Secret stays and secretsync
/// lets go of it: the ownership marks (labels, proof, data HMAC) are removed, so nothing claims it
/// any more (a later SecretRef of the same name does not adopt it silently either: its uid differs).
async fn cleanup(sref: Arc<SecretRef>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = ctx.key_of(&sref);
    let target = sref.spec.target.clone().unwrap_or_default();
    let policy = target.deletion_policy.unwrap_or_default();
    let creation = target.creation_policy.unwrap_or_default();
    if creation != CreationPolicy::Merge {
        let ns = sref.namespace().unwrap_or_default();
        let tname = target_name(&sref);
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
        let status = sref.status.clone().unwrap_or_default();
        if let Some(s) = secrets.get_opt(&tname).await.map_err(kube_err)?
            && ownership(&ctx, &sref, &status, &tname).owns(&s)
        {
            if !ctx.may_write() {
                return Err(Error::NotLeader);
            }
            if policy == DeletionPolicy::Delete && creation == CreationPolicy::Owner {
                secrets
                    .delete(&tname, &delete_exactly(&s))
                    .await
                    .map_err(kube_err)?;
                let mut rec = audit_record(&ctx, &sref, None, "delete", "success");
                rec.target = Some(format!("{ns}/{tname}"));
                ctx.audit.record(rec);
                info!(secret = %tname, "deleted Secret with its SecretRef (deletionPolicy Delete)");
            } else {
                let release = json!({"metadata": {
                    "resourceVersion": s.resource_version(),
                    "labels": {api::MANAGED_BY_LABEL: null, api::SECRETREF_LABEL: null},
                    "annotations": {api::OWNER_ANNOTATION: null, api::DATA_HMAC_ANNOTATION: null},
                }});
                secrets
                    .patch(
                        &tname,
                        &PatchParams {
                            field_manager: Some(api::FIELD_MANAGER.into()),
                            ..Default::default()
                        },
                        &Patch::Merge(&release),
                    )
                    .await
                    .map_err(kube_err)?;
                info!(secret = %tname, "released Secret with its SecretRef (deletionPolicy Retain)");
            }
        }
    }
    ctx.forget(&key);
    ctx.metrics.set_secretref_state(&key, None, None);
    Ok(Action::await_change())
}
