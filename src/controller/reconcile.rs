//! The reconciler, IO only: resolve the store → read the sources (at most once per refresh slot or
//! backoff step) → build the desired Secret → [`sync::outcome`] decides the write, the status, the
//! events and the audit records → carry them out (status and events only on change).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::Event;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, instrument, warn};

use super::context::Context;
use super::desired::{self, Answers, BuildError};
pub use super::error::Error;
use super::error::kube_error_summary;
use super::error::{finalizer_err, kube_err};
use super::resolver::Resolved;
use super::sync::{self, Sourced, SyncInput, Write, target_name};
use super::target;
use super::{conditions as cond, read_outcome, schedule};
use crate::api::{
    self, CreationPolicy, DeletionPolicy, Reason, SecretRef, SecretRefStatus, duration, validation,
};
use crate::providers::{FetchedSecret, FindQuery, ProviderError, RemoteRef};
use crate::stores::read::{self, Mode, Reader};

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
            .map_or_else(|e| e.reason().as_str(), |_| "success"),
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
    let conflict = matches!(err, Error::Conflict { .. });
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
    debug!(reason = %err.reason(), error = %err, failures, backoff_ms = d.as_millis() as u64, "reconcile failed");
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
    ctx.requeue(
        &key,
        at.map_or(schedule::BASE_BACKOFF, |t| {
            t.saturating_duration_since(now)
                .max(Duration::from_millis(10))
        }),
    )
}

fn refresh_interval(sref: &SecretRef, store: Option<&Resolved>, ctx: &Context) -> Duration {
    sref.spec
        .refresh_interval
        .as_deref()
        .and_then(|s| duration::parse(s).ok())
        .or_else(|| store.and_then(|s| s.refresh_interval))
        .unwrap_or(ctx.settings.default_refresh_interval)
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
        adopt_from: sref
            .annotations()
            .get(api::ADOPT_ANNOTATION)
            .and_then(|v| target::adopt_from(v)),
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
    let tname = target_name(&sref);
    let nskey = ctx.ns_hmac(&ns);
    let owner = ownership(&ctx, &sref, &old_status, &tname);
    // A new value of the force-sync annotation refreshes at once, bypassing every cache and backoff.
    let force = sref.annotations().get(api::FORCE_SYNC_ANNOTATION).cloned();
    let forced = force.is_some() && force != old_status.last_force_sync;
    let announced = ctx.with_state(&key, |s| s.announced);
    let input = |existing| SyncInput {
        sref: &sref,
        old: &old_status,
        existing,
        owner: &owner,
        key: &nskey,
        legacy_key: &ctx.hmac,
        forced: force.as_deref().filter(|_| forced),
        announced,
        now: Utc::now(),
    };

    if sref
        .annotations()
        .get(api::PAUSED_ANNOTATION)
        .map(String::as_str)
        == Some("true")
    {
        let out = sync::outcome(&input(None), Sourced::Paused);
        carry_out(&ctx, &sref, None, &old_status, out).await?;
        return Ok(Action::await_change());
    }

    // Bad input: the condition names the field; nothing is written.
    if let Some(first) = validation::validate_secretref(&sref.spec)
        .into_iter()
        .next()
    {
        let e = Error::Build(BuildError {
            reason: Reason::InvalidSpec,
            field: first.field,
            message: first.message,
        });
        let out = sync::outcome(&input(None), Sourced::Failed(&e));
        carry_out(&ctx, &sref, None, &old_status, out).await?;
        return Ok(Action::await_change());
    }

    // A new or changed SecretRef re-reads the store's external inputs (credentials, file store document).
    let spec_changed = old_status.observed_generation != generation;
    let store = match ctx.stores.resolve(&sref, spec_changed || forced).await {
        Ok(s) => s,
        Err(e) => {
            let e = Error::Store(e);
            let out = sync::outcome(&input(None), Sourced::Failed(&e));
            carry_out(&ctx, &sref, None, &old_status, out).await?;
            return Err(e);
        }
    };
    let interval = refresh_interval(&sref, Some(&store), &ctx);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = secrets
        .get_opt(&tname)
        .await
        .map_err(kube_err(format!("get Secret {tname:?}")))?;
    let creation = sref.spec.creation_policy();

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
        && existing
            .as_ref()
            .is_some_and(|s| secret_matches_status(s, &old_status, &owner, creation, &ctx));
    if in_sync && !due && !forced {
        // Verified without a provider call: count it as Ready (after a restart, the gauge would
        // otherwise stay empty until each SecretRef's first refresh).
        ctx.set_ready(
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
    let target_changed = synced_before && !in_sync;
    let gate = ctx.with_state(&key, |s| {
        let reasons = schedule::ReadReasons {
            forced,
            spec_changed: s.read_generation != generation || generation.is_none(),
            store_changed,
            woken: std::mem::take(&mut s.woken),
            target_changed,
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
        schedule::ReadGate::Wait(d) => return Ok(ctx.requeue(&key, d)),
        schedule::ReadGate::Read { scheduled } => scheduled,
    };

    // Fetch everything the SecretRef needs; any failure leaves the Secret untouched.
    let max_age = if forced {
        Duration::ZERO
    } else if due || target_changed {
        // Answers read by other SecretRefs earlier in this cycle are shared (one provider read per key
        // per cycle); 0.95 rather than 1 so a SecretRef never reuses its own previous read. A changed
        // target Secret is restored from the answers of this refresh cycle.
        interval.mul_f64(0.95)
    } else {
        Duration::from_secs(5)
    };
    let answers = match fetch_all(&ctx, &sref, &store, max_age).await {
        Ok(a) => a,
        Err((e, all_not_found)) => {
            let out = sync::outcome(
                &input(existing.as_ref()),
                Sourced::ReadFailed {
                    error: &e,
                    all_not_found,
                    scheduled,
                },
            );
            ctx.set_ready(&key, Some(false), None);
            carry_out(&ctx, &sref, Some(&store), &old_status, out).await?;
            return Err(e);
        }
    };
    // The store answers: SecretRefs backing off from its earlier failures retry now.
    ctx.wake_store(&Context::store_key(&sref));
    let desired = match desired::build(&name, &sref.spec, &answers, &nskey) {
        Ok(d) => d,
        Err(e) => {
            let e = Error::Build(e);
            let out = sync::outcome(&input(existing.as_ref()), Sourced::Failed(&e));
            carry_out(&ctx, &sref, Some(&store), &old_status, out).await?;
            return Err(e);
        }
    };
    let out = sync::outcome(
        &input(existing.as_ref()),
        Sourced::Built {
            desired: &desired,
            store_kind: store.kind,
            store: &store.name,
        },
    );
    let ready = out.ready();
    if let Some(e) = carry_out(&ctx, &sref, Some(&store), &old_status, out).await? {
        return Err(e);
    }
    ctx.set_ready(&key, Some(ready), desired.expires_at.map(|e| e.timestamp()));
    ctx.with_state(&key, |s| {
        s.failures = 0;
        s.conflicts = 0;
        s.next_retry = None;
        s.wake_spent = false;
        s.store_id = Some(store.handle.id.clone());
    });
    Ok(schedule_next(&ctx, &sref, &key, interval))
}

/// Carries out an [`sync::Outcome`]: the write (a failed write stops here: nothing is recorded as
/// done), the audit records, the rotation (remembered, counted, restarts scheduled), the events,
/// then the status when it changed. Returns the error the outcome ends with, if any.
async fn carry_out(
    ctx: &Context,
    sref: &SecretRef,
    store: Option<&Resolved>,
    old: &SecretRefStatus,
    out: sync::Outcome,
) -> Result<Option<Error>, Error> {
    if !ctx.may_write() {
        return match out.write {
            Some(_) => Err(Error::NotLeader),
            None => Ok(out.error),
        };
    }
    let ns = sref.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    match &out.write {
        Some(Write::Apply {
            object,
            field_manager,
        }) => {
            let tname = object.name_any();
            let written = secrets
                .patch(
                    &tname,
                    &PatchParams::apply(field_manager).force(),
                    &Patch::Apply(object.as_ref()),
                )
                .await
                .map_err(kube_err(format!("apply Secret {tname:?}")))?;
            ctx.metrics.secret_written();
            note_secret_write(ctx, sref, &written);
        }
        Some(Write::Adopt { name, patch }) => {
            let written = secrets
                .patch(
                    name,
                    &PatchParams {
                        field_manager: Some(api::FIELD_MANAGER.to_string()),
                        ..Default::default()
                    },
                    &Patch::Merge(patch),
                )
                .await
                .map_err(kube_err(format!("adopt Secret {name:?}")))?;
            ctx.metrics.secret_written();
            note_secret_write(ctx, sref, &written);
        }
        Some(Write::Delete {
            name,
            uid,
            resource_version,
        }) => {
            let dp = kube::api::DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: uid.clone(),
                    resource_version: resource_version.clone(),
                }),
                ..Default::default()
            };
            secrets
                .delete(name, &dp)
                .await
                .map_err(kube_err(format!("delete Secret {name:?}")))?;
        }
        None => {}
    }
    for a in &out.audit {
        let mut rec = audit_record(ctx, sref, store, a.action, a.outcome);
        rec.remote_key = a.remote_key.clone();
        rec.target = a.target.clone();
        rec.hmac = a.hmac.clone();
        ctx.audit.record(rec);
    }
    if let Some(r) = &out.rotation {
        ctx.with_state(&ctx.key_of(sref), |s| s.announced = r.id);
        ctx.metrics.rotated();
        info!(secret = %r.secret, "data rotated");
        schedule_restarts(ctx, sref, &r.secret, &r.data_hmac).await;
    }
    for n in &out.events {
        if n.warning && n.action == "Sync" {
            warn!(reason = %n.reason, error = %n.note, "sync failed");
        }
        publish(ctx, sref, n).await;
    }
    write_status(ctx, sref, old, out.status).await?;
    Ok(out.error)
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
        ctx.work.cancel(key);
        return Action::await_change();
    }
    let now_ms = Utc::now().timestamp_millis().max(0) as u64;
    let wait = schedule::until_next_refresh(now_ms, &sref.uid().unwrap_or_default(), interval);
    ctx.with_state(key, |s| {
        s.next_refresh =
            Some(tokio::time::Instant::now() + wait - Duration::from_millis(50).min(wait))
    });
    ctx.requeue(key, wait)
}

/// Reads sent at once by one reconcile (more for providers that batch).
const READ_PART: usize = 4;

/// The controller's way to the provider: the shared fetch layer (cache, coalescing, budget).
struct Fetched<'a> {
    ctx: &'a Context,
    store: &'a Resolved,
    max_age: Duration,
}

#[async_trait::async_trait]
impl Reader for Fetched<'_> {
    async fn find(&self, q: &FindQuery) -> Result<Vec<String>, ProviderError> {
        self.ctx.fetcher.find(&self.store.handle, q).await
    }
    async fn get_many(&self, refs: &[RemoteRef]) -> Vec<Result<FetchedSecret, ProviderError>> {
        self.ctx
            .fetcher
            .get_many(&self.store.handle, refs, self.max_age)
            .await
    }
    fn part(&self) -> usize {
        self.store.handle.provider.max_batch().max(READ_PART)
    }
}

/// The reads of one reconcile ([`read::read`], stopping at the first refusal), each audited
/// and counted. `Err((e, true))`: every read said not found (counts toward deletion); store denials
/// and search failures never do.
async fn fetch_all(
    ctx: &Context,
    sref: &SecretRef,
    store: &Resolved,
    max_age: Duration,
) -> Result<Answers, (Error, bool)> {
    let ns = sref.namespace().unwrap_or_default();
    let perr = |source: ProviderError| Error::Provider {
        store: store.name.clone(),
        source,
    };
    let reader = Fetched {
        ctx,
        store,
        max_age,
    };
    let report = read::read(store, &ns, &sref.spec, &reader, Mode::StopAtRefusal).await;
    if let Some(e) = report.refusal() {
        return Err((e.clone().into(), false));
    }
    if let Some(e) = report.failed_search() {
        return Err((perr(e.clone()), false));
    }
    for (r, res) in &report.reads {
        let mut rec = audit_record(
            ctx,
            sref,
            Some(store),
            "read",
            res.as_ref()
                .map_or_else(|e| e.reason().as_str(), |_| "success"),
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
                .map_or_else(|e| e.reason().as_str(), |_| "success"),
        );
    }
    // Complete answers only; the most telling error otherwise (deletion needs all-not-found).
    let mut answers = report.answers;
    match read_outcome::fold_reads(report.reads) {
        Ok(values) => {
            answers.values = values;
            Ok(answers)
        }
        Err(f) => Err((perr(f.error), f.all_not_found)),
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
    let written = api
        .patch_status(
            &sref.name_any(),
            &PatchParams::apply(api::FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(kube_err(format!(
            "patch SecretRef {:?} status",
            sref.name_any()
        )))?;
    ctx.metrics.status_written();
    let own_rv = super::context::rv_number(written.metadata.resource_version.as_deref());
    ctx.with_state(&ctx.key_of(sref), |s| {
        s.own_rv = own_rv;
        if let Some(rv) = sref.resource_version() {
            s.written = Some(Box::new((rv, new)));
        }
    });
    Ok(())
}

/// Remembers the version our write gave the target Secret (its watch event needs no reconcile).
fn note_secret_write(ctx: &Context, sref: &SecretRef, written: &Secret) {
    let rv = super::context::rv_number(written.metadata.resource_version.as_deref());
    ctx.with_state(&ctx.key_of(sref), |s| s.secret_rv = rv);
}

async fn publish(ctx: &Context, sref: &SecretRef, n: &sync::Note) {
    if !ctx.may_write() {
        return;
    }
    let ev = Event {
        type_: n.event_type(),
        reason: n.reason.as_str().into(),
        note: Some(n.note.clone()),
        action: n.action.into(),
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
        if let Some(s) = secrets
            .get_opt(&tname)
            .await
            .map_err(kube_err(format!("get Secret {tname:?}")))?
            && ownership(&ctx, &sref, &status, &tname).owns(&s)
        {
            if !ctx.may_write() {
                return Err(Error::NotLeader);
            }
            if policy == DeletionPolicy::Delete && creation == CreationPolicy::Owner {
                secrets
                    .delete(&tname, &delete_exactly(&s))
                    .await
                    .map_err(kube_err(format!("delete Secret {tname:?}")))?;
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
                    .map_err(kube_err(format!("release Secret {tname:?}")))?;
                info!(secret = %tname, "released Secret with its SecretRef (deletionPolicy Retain)");
            }
        }
    }
    ctx.forget(&key);
    ctx.set_ready(&key, None, None);
    Ok(Action::await_change())
}
