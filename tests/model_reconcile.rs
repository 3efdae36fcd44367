//! Model test of the reconcile decisions (DESIGN §2.1–2.4).
//!
//! Each case is a random SecretRef shape (1–3 remote keys, data items with and without a JSON
//! property, an optional `extract`, random creation/drift/deletion policies) and a random sequence of
//! reconciles. Before each reconcile the Kubernetes side may be perturbed (hand edits, removed or
//! blanked keys, the Secret deleted, replaced by a foreign one, its type changed); then every remote key
//! gets a random provider answer (a value, not-found, access denied, throttled, transient, malformed —
//! partial batch failures come from mixing them) and time moves on by 0–7 minutes.
//!
//! The step runs the controller's own functions in the order `reconcile.rs` does (`desired::plan` →
//! `read_outcome::fold_reads` → `desired::build` → `sync::outcome`, the same pure function that decides the
//! controller's write, status, events and audit records) and carries the outcome out on a model of
//! the Secret. An independent oracle, computed from the answers alone, checks after every step:
//! - no key is removed, blanked or changed unless every source answered completely and validly;
//! - when written, the Secret holds exactly the data the sources gave (or, with Merge, at least it);
//! - Ready is never True while an expected key is missing or empty, or after an incomplete answer;
//! - deletion only after three authoritative all-not-founds in a row over ≥ 10 minutes, never
//!   otherwise (in particular never on access denied or a partial not-found);
//! - a Secret secretsync does not own is never written without `creationPolicy: Merge`;
//! - the outcome is consistent with itself: an audit `write` record exactly when the Secret is
//!   written and a `delete` record exactly when it is deleted; a `Rotated` event only when the synced
//!   data changed after a first sync, at most once per change; a not-found streak only under
//!   `deletionPolicy: Delete`.
//!
//! `PROPTEST_CASES` sets the number of cases: 100,000 by default (CI), 1,000,000 in `make soak`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use proptest::prelude::*;
use secretsync::api::{
    CreationPolicy, DataFrom, DataItem, DeletionPolicy, DriftPolicy, Reason, RemoteRefSpec,
    SecretRef, SecretRefSpec, SecretRefStatus, StoreKind, StoreRef, Target,
};
use secretsync::audit::HmacKey;
use secretsync::controller::desired::{self, Answers};
use secretsync::controller::error::Error;
use secretsync::controller::read_outcome;
use secretsync::controller::sync::{self, Sourced, SyncInput, Write};
use secretsync::controller::target;
use secretsync::providers::{FetchedSecret, ProviderError, SecretMetadata};
use secretsync::value::SecretBytes;

const PLAIN: [&[u8]; 4] = [b"a", b"b", b"\x00\xff\xfe", b""];
const OBJ: [&str; 3] = ["x", "y", ""];

#[derive(Clone, Copy, Debug)]
enum Val {
    Plain(usize),
    Obj(usize),
}

impl Val {
    fn bytes(self) -> Vec<u8> {
        match self {
            Val::Plain(i) => PLAIN[i].to_vec(),
            Val::Obj(i) => format!(r#"{{"p":"{}"}}"#, OBJ[i]).into_bytes(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Ans {
    Value(Val, u8),
    NotFound,
    Denied,
    Throttled,
    Transient,
    Malformed,
}

#[derive(Clone, Copy, Debug)]
enum Perturb {
    None,
    EditValue,
    RemoveKey,
    BlankKey,
    Delete,
    MakeForeign,
    ForeignCreate,
    /// A foreign Secret carrying copies of the ownership labels (no proof).
    ForgedLabels,
    TypeChange,
}

#[derive(Clone, Debug)]
struct Shape {
    n_remote: usize,
    items: Vec<(usize, bool)>,
    extract: Option<usize>,
    creation: CreationPolicy,
    drift: DriftPolicy,
    deletion: DeletionPolicy,
}

#[derive(Clone, Debug)]
struct Step {
    dt_secs: i64,
    perturb: Perturb,
    answers: [Ans; 3],
    /// Answer like the previous reconcile (providers are sticky: outages and deletions last).
    repeat: bool,
}

fn ans() -> impl Strategy<Value = Ans> {
    let val = prop_oneof![
        (0..PLAIN.len()).prop_map(Val::Plain),
        (0..OBJ.len()).prop_map(Val::Obj)
    ];
    prop_oneof![
        8 => (val, 0u8..3).prop_map(|(v, ver)| Ans::Value(v, ver)),
        3 => Just(Ans::NotFound),
        1 => Just(Ans::Denied),
        1 => Just(Ans::Throttled),
        1 => Just(Ans::Transient),
        1 => Just(Ans::Malformed),
    ]
}

fn perturb() -> impl Strategy<Value = Perturb> {
    prop_oneof![
        12 => Just(Perturb::None),
        1 => Just(Perturb::EditValue),
        1 => Just(Perturb::RemoveKey),
        1 => Just(Perturb::BlankKey),
        1 => Just(Perturb::Delete),
        1 => Just(Perturb::MakeForeign),
        1 => Just(Perturb::ForeignCreate),
        1 => Just(Perturb::ForgedLabels),
        1 => Just(Perturb::TypeChange),
    ]
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        1usize..=3,
        prop::collection::vec((0usize..3, any::<bool>()), 1..=3),
        prop::option::of(0usize..3),
        prop_oneof![
            Just(CreationPolicy::Owner),
            Just(CreationPolicy::Merge),
            Just(CreationPolicy::Orphan)
        ],
        prop_oneof![
            Just(DriftPolicy::Revert),
            Just(DriftPolicy::Alert),
            Just(DriftPolicy::Ignore)
        ],
        prop_oneof![Just(DeletionPolicy::Retain), Just(DeletionPolicy::Delete)],
    )
        .prop_map(|(n, items, extract, creation, drift, deletion)| Shape {
            n_remote: n,
            items: items.into_iter().map(|(r, p)| (r % n, p)).collect(),
            extract: extract.map(|r| r % n),
            creation,
            drift,
            deletion,
        })
}

fn step() -> impl Strategy<Value = Step> {
    (0i64..=420, perturb(), [ans(), ans(), ans()], any::<bool>()).prop_map(
        |(dt_secs, perturb, answers, repeat)| Step {
            dt_secs,
            perturb,
            answers,
            repeat,
        },
    )
}

fn remote(i: usize) -> String {
    format!("/r{i}")
}

fn spec_of(s: &Shape) -> SecretRefSpec {
    SecretRefSpec {
        store_ref: StoreRef {
            name: "store".into(),
            kind: None,
        },
        target: Some(Box::new(Target {
            name: Some("t".into()),
            creation_policy: Some(s.creation),
            deletion_policy: Some(s.deletion),
            drift_policy: Some(s.drift),
            ..Default::default()
        })),
        data: s
            .items
            .iter()
            .enumerate()
            .map(|(i, (r, prop))| DataItem {
                secret_key: format!("k{i}"),
                remote_ref: RemoteRefSpec {
                    key: remote(*r),
                    property: prop.then(|| "p".to_string()),
                    version: None,
                },
                validate: None,
            })
            .collect(),
        data_from: s
            .extract
            .map(|r| DataFrom {
                extract: Some(RemoteRefSpec {
                    key: remote(r),
                    ..Default::default()
                }),
                find: None,
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

fn answer_result(a: Ans, key: &str) -> Result<FetchedSecret, ProviderError> {
    match a {
        Ans::Value(v, ver) => Ok(FetchedSecret {
            value: SecretBytes::new(v.bytes()),
            meta: SecretMetadata {
                version: Some(format!("v{ver}")),
                ..Default::default()
            },
        }),
        Ans::NotFound => Err(ProviderError::NotFound { key: key.into() }),
        Ans::Denied => Err(ProviderError::AccessDenied {
            key: Some(key.into()),
            message: "denied".into(),
        }),
        Ans::Throttled => Err(ProviderError::Throttled {
            retry_after: Some(std::time::Duration::from_secs(1)),
        }),
        Ans::Transient => Err(ProviderError::Transient {
            message: "503".into(),
        }),
        Ans::Malformed => Err(ProviderError::InvalidResponse {
            key: key.into(),
            message: "truncated body".into(),
        }),
    }
}

/// The oracle: the data the sources give, from the answers alone (`None`: incomplete or invalid).
fn expected(s: &Shape, answers: &[Ans; 3]) -> Option<BTreeMap<String, Vec<u8>>> {
    let val = |r: usize| match answers[r] {
        Ans::Value(v, _) => Some(v),
        _ => None,
    };
    let mut out = BTreeMap::new();
    if let Some(r) = s.extract {
        match val(r)? {
            Val::Obj(i) => out.insert("p".to_string(), OBJ[i].as_bytes().to_vec()),
            Val::Plain(_) => return None,
        };
    }
    for (i, (r, prop)) in s.items.iter().enumerate() {
        let v = val(*r)?;
        let bytes = match (v, prop) {
            (Val::Obj(j), true) => OBJ[j].as_bytes().to_vec(),
            (Val::Plain(_), true) => return None,
            (v, false) => v.bytes(),
        };
        out.insert(format!("k{i}"), bytes);
    }
    if out.values().any(Vec::is_empty) {
        return None;
    }
    Some(out)
}

fn data_of(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    s.data
        .as_ref()
        .map(|d| d.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default()
}

struct World {
    secret: Option<Secret>,
    /// The SecretRef's status, as the controller's outcome left it.
    status: SecretRefStatus,
    /// The rotation last announced (in the controller's memory).
    announced: u32,
    now: DateTime<Utc>,
    /// The oracle's own streak of all-not-found answers: (count, first).
    streak: Option<(u32, DateTime<Utc>)>,
}

fn perturb_secret(w: &mut World, p: Perturb) {
    let first_key = |s: &Secret| s.data.as_ref().and_then(|d| d.keys().next().cloned());
    match p {
        Perturb::None => {}
        Perturb::EditValue | Perturb::RemoveKey | Perturb::BlankKey => {
            if let Some(s) = w.secret.as_mut()
                && let Some(k) = first_key(s)
            {
                let d = s.data.get_or_insert_default();
                match p {
                    Perturb::EditValue => {
                        d.insert(k, ByteString(b"hand-edit".to_vec()));
                    }
                    Perturb::RemoveKey => {
                        d.remove(&k);
                    }
                    _ => {
                        d.insert(k, ByteString(Vec::new()));
                    }
                }
            }
        }
        Perturb::Delete => w.secret = None,
        Perturb::MakeForeign => {
            if let Some(s) = w.secret.as_mut() {
                s.metadata.labels = None;
                s.metadata.annotations = None;
            }
        }
        Perturb::ForgedLabels => {
            if w.secret.is_none() {
                let mut s = Secret::default();
                s.metadata.name = Some("t".into());
                s.metadata.labels = Some(
                    [
                        (
                            "app.kubernetes.io/managed-by".to_string(),
                            "secretsync".to_string(),
                        ),
                        ("secretsync.io/secretref".to_string(), "s".to_string()),
                    ]
                    .into(),
                );
                s.type_ = Some("Opaque".into());
                s.data = Some([("k0".to_string(), ByteString(b"theirs".to_vec()))].into());
                w.secret = Some(s);
            }
        }
        Perturb::ForeignCreate => {
            if w.secret.is_none() {
                let mut s = Secret::default();
                s.metadata.name = Some("t".into());
                s.type_ = Some("Opaque".into());
                s.data = Some([("k0".to_string(), ByteString(b"theirs".to_vec()))].into());
                w.secret = Some(s);
            }
        }
        Perturb::TypeChange => {
            if let Some(s) = w.secret.as_mut() {
                s.type_ = Some("kubernetes.io/tls".into());
            }
        }
    }
}

/// Server-side apply of `obj` (as field manager secretsync) onto the modelled Secret.
fn ssa(existing: Option<Secret>, obj: Secret, creation: CreationPolicy) -> Secret {
    let Some(mut s) = existing else {
        let mut s = obj;
        s.type_.get_or_insert_with(|| "Opaque".into());
        return s;
    };
    let labels = s.metadata.labels.get_or_insert_default();
    labels.extend(obj.metadata.labels.unwrap_or_default());
    if let Some(a) = obj.metadata.annotations {
        s.metadata.annotations.get_or_insert_default().extend(a);
    }
    if obj.immutable.is_some() {
        s.immutable = obj.immutable;
    }
    let new = obj.data.unwrap_or_default();
    match creation {
        // Our field manager owns every data key it applied: keys no longer applied go away.
        CreationPolicy::Owner | CreationPolicy::Orphan => s.data = Some(new),
        CreationPolicy::Merge => s.data.get_or_insert_default().extend(new),
    }
    s
}

/// The modelled SecretRef (its spec, namespace `ns`, generation 1).
fn model_sref(spec: &SecretRefSpec) -> SecretRef {
    let mut s = SecretRef::new("s", spec.clone());
    s.metadata.namespace = Some("ns".into());
    s.metadata.generation = Some(1);
    s.metadata.uid = Some("uid-s".into());
    s
}

/// The modelled SecretRef's ownership (its proof; the labels alone prove nothing).
fn owner() -> target::Ownership {
    target::Ownership {
        sref_name: "s".into(),
        proof: Some("proof-of-s".into()),
        claimed_in_status: false,
        adopt_from: None,
    }
}

/// One reconcile, in the order reconcile.rs runs it, then the invariants.
fn reconcile_step(
    w: &mut World,
    shape: &Shape,
    spec: &SecretRefSpec,
    st: &Step,
    key: &HmacKey,
) -> Result<(), TestCaseError> {
    w.now += Duration::seconds(st.dt_secs);
    perturb_secret(w, st.perturb);
    let before = w.secret.clone();
    let owned_before = before.as_ref().is_some_and(|s| owner().owns(s));

    // Oracle.
    let used: Vec<usize> = (0..shape.n_remote)
        .filter(|r| shape.extract == Some(*r) || shape.items.iter().any(|(i, _)| i == r))
        .collect();
    let want = expected(shape, &st.answers);
    let all_nf = used.iter().all(|r| matches!(st.answers[*r], Ans::NotFound));
    let delete_policy = shape.deletion == DeletionPolicy::Delete;
    w.streak = if all_nf && delete_policy {
        Some(match w.streak {
            Some((n, since)) => (n + 1, since),
            None => (1, w.now),
        })
    } else {
        None
    };
    let may_delete = w
        .streak
        .is_some_and(|(n, since)| n >= 3 && w.now - since >= Duration::minutes(10));

    // The controller's functions, as reconcile.rs runs them: plan, reads, fold, build, then the
    // pure outcome (write, status, events), carried out on the modelled Secret. Every step of the
    // model is a scheduled refresh.
    let plan = desired::plan(spec);
    let results = plan.reads.iter().map(|r| {
        let idx: usize = r.key[2..].parse().unwrap();
        (r.clone(), answer_result(st.answers[idx], &r.key))
    });
    let sref = model_sref(spec);
    let owner = owner();
    let input = SyncInput {
        sref: &sref,
        old: &w.status,
        existing: w.secret.as_ref(),
        owner: &owner,
        key,
        legacy_key: &HmacKey::new(vec![8; 32]),
        forced: None,
        announced: w.announced,
        now: w.now,
    };
    let out = match read_outcome::fold_reads(results) {
        Err(f) => {
            let e = Error::Provider {
                store: "s".into(),
                source: f.error,
            };
            sync::outcome(
                &input,
                Sourced::ReadFailed {
                    error: &e,
                    all_not_found: f.all_not_found,
                    scheduled: true,
                },
            )
        }
        Ok(values) => {
            let answers = Answers {
                values,
                found: Default::default(),
            };
            match desired::build("s", spec, &answers, key) {
                Err(b) => sync::outcome(&input, Sourced::Failed(&Error::Build(b))),
                Ok(d) => sync::outcome(
                    &input,
                    Sourced::Built {
                        desired: &d,
                        store_kind: StoreKind::SecretStore,
                        store: "s",
                    },
                ),
            }
        }
    };
    match &out.write {
        Some(Write::Apply { object, .. }) => {
            w.secret = Some(ssa(w.secret.take(), (**object).clone(), shape.creation));
        }
        Some(Write::Delete { .. }) => w.secret = None,
        // The model never opts in to adopting an ESO Secret.
        Some(Write::Adopt { .. }) => prop_assert!(false, "adoption without the opt-in"),
        None => {}
    }
    // The outcome agrees with itself.
    let audited = |a: &str| out.audit.iter().filter(|n| n.action == a).count();
    prop_assert_eq!(
        audited("write"),
        usize::from(matches!(out.write, Some(Write::Apply { .. })))
    );
    prop_assert_eq!(
        audited("delete"),
        usize::from(matches!(out.write, Some(Write::Delete { .. })))
    );
    let rotated = out
        .events
        .iter()
        .filter(|e| e.reason == Reason::Rotated)
        .count();
    prop_assert!(rotated <= 1);
    prop_assert_eq!(rotated == 1, out.rotation.is_some());
    if out.rotation.is_some() {
        prop_assert!(
            w.status.data_hmac.is_some() && w.status.data_hmac != out.status.data_hmac,
            "Rotated without a change after a first sync"
        );
    }
    if shape.deletion != DeletionPolicy::Delete {
        prop_assert!(out.status.not_found.is_none());
    }
    if let Some(r) = &out.rotation {
        w.announced = r.id;
    }
    let ready = out.ready();
    w.status = out.status;

    // Invariants.
    let after = w.secret.as_ref();
    let data_before = before.as_ref().map(data_of);
    let data_after = after.map(data_of);
    let changed = data_before != data_after;
    if before.is_some() && after.is_none() {
        prop_assert!(
            may_delete && owned_before && want.is_none(),
            "deleted without three all-not-founds over 10 minutes (streak {:?})",
            w.streak
        );
    } else if changed {
        let Some(want) = &want else {
            return Err(TestCaseError::fail(format!(
                "data changed although the sources did not answer completely and validly: {:?}",
                st.answers
            )));
        };
        let got = data_after.clone().unwrap_or_default();
        match shape.creation {
            CreationPolicy::Merge => {
                for (k, v) in want {
                    prop_assert_eq!(got.get(k), Some(v), "merged key {} differs", k);
                }
                for (k, v) in data_before.iter().flatten() {
                    prop_assert!(
                        want.contains_key(k) || got.get(k) == Some(v),
                        "Merge removed or changed a foreign key {}",
                        k
                    );
                }
            }
            _ => prop_assert_eq!(&got, want, "written data is not what the sources gave"),
        }
        if shape.creation != CreationPolicy::Merge && before.is_some() {
            prop_assert!(owned_before, "overwrote a Secret secretsync does not own");
        }
    }
    if ready {
        let Some(want) = &want else {
            return Err(TestCaseError::fail(
                "Ready=True after an incomplete or invalid answer",
            ));
        };
        let got = data_after.clone().unwrap_or_default();
        for (k, v) in want {
            if shape.drift == DriftPolicy::Revert {
                prop_assert_eq!(
                    got.get(k),
                    Some(v),
                    "Ready=True but key {} is not synced",
                    k
                );
            } else {
                // A kept hand edit may change a value, but Ready=True still needs every key.
                prop_assert!(
                    got.get(k).is_some_and(|g| !g.is_empty()),
                    "Ready=True but key {} is missing or empty (driftPolicy {:?})",
                    k,
                    shape.drift
                );
            }
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 20_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn reconcile_model(shape in shape(), steps in prop::collection::vec(step(), 1..12)) {
        let key = HmacKey::new(vec![7; 32]);
        let spec = spec_of(&shape);
        let mut w = World {
            secret: None,
            status: SecretRefStatus::default(),
            announced: 0,
            now: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            streak: None,
        };
        let mut prev: Option<[Ans; 3]> = None;
        for st in &steps {
            let mut st = st.clone();
            if st.repeat && let Some(p) = prev {
                st.answers = p;
            }
            prev = Some(st.answers);
            reconcile_step(&mut w, &shape, &spec, &st, &key)?;
        }
    }
}
