//! Folding one reconcile's provider answers into what happens next (pure): whether the answers are
//! complete enough to build the Secret from, and — when they are not — how the not-found streak of
//! `deletionPolicy: Delete` moves (DESIGN §2.2 and §2.3). The reconciler does the IO around these; the
//! model test (`tests/model_reconcile.rs`) drives them with random provider answers.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::api::{self, NotFoundRecord};
use crate::providers::{FetchedSecret, ProviderError, RemoteRef};

/// Why the reads of a reconcile cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadFailure {
    /// The most telling error (anything beats not-found).
    pub error: ProviderError,
    /// Every read said *not found* authoritatively: the only answer that counts toward deletion.
    pub all_not_found: bool,
}

/// Folds the per-read results of one reconcile: the values only if every read succeeded; otherwise
/// the most telling error and whether every single read said not found (a partial not-found, or a
/// not-found next to access denied or a timeout, is ambiguous and never counts toward deletion).
pub fn fold_reads(
    results: impl IntoIterator<Item = (RemoteRef, Result<FetchedSecret, ProviderError>)>,
) -> Result<HashMap<RemoteRef, FetchedSecret>, ReadFailure> {
    let mut values = HashMap::new();
    let mut first_err: Option<ProviderError> = None;
    let mut all_not_found = true;
    for (r, res) in results {
        match res {
            Ok(v) => {
                all_not_found = false;
                values.insert(r, v);
            }
            Err(e) => {
                if !matches!(e, ProviderError::NotFound { .. }) {
                    all_not_found = false;
                }
                if first_err
                    .as_ref()
                    .is_none_or(|f| matches!(f, ProviderError::NotFound { .. }))
                {
                    first_err = Some(e);
                }
            }
        }
    }
    match first_err {
        Some(error) => Err(ReadFailure {
            error,
            all_not_found,
        }),
        None => Ok(values),
    }
}

/// The not-found streak after a failed reconcile, and whether the target may now be deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct NotFoundStep {
    /// The streak to record in status (`None`: the streak is broken).
    pub record: Option<NotFoundRecord>,
    /// Three authoritative not-founds in a row over at least ten minutes: delete (if owned).
    pub delete: bool,
}

/// What a failed reconcile's answer means for the not-found streak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFoundAnswer {
    /// Every read said not found authoritatively, at a scheduled refresh, and the SecretRef has
    /// `deletionPolicy: Delete`: the streak grows.
    Counts,
    /// The same answer outside a refresh slot (a backoff step, a spec change, a wake-up): the
    /// streak neither grows nor breaks.
    Holds,
    /// Anything else: the streak breaks.
    Breaks,
}

impl NotFoundAnswer {
    /// `all_not_found`: every read said not found authoritatively and the policy is `Delete`;
    /// `scheduled`: the read was the refresh slot's.
    pub fn of(all_not_found: bool, scheduled: bool) -> Self {
        match (all_not_found, scheduled) {
            (true, true) => Self::Counts,
            (true, false) => Self::Holds,
            (false, _) => Self::Breaks,
        }
    }
}

/// Advances the streak (DESIGN §2.3: counted on scheduled refreshes only).
pub fn not_found_step(
    old: Option<&NotFoundRecord>,
    answer: NotFoundAnswer,
    now: DateTime<Utc>,
) -> NotFoundStep {
    match answer {
        NotFoundAnswer::Breaks => {
            return NotFoundStep {
                record: None,
                delete: false,
            };
        }
        NotFoundAnswer::Holds => {
            return NotFoundStep {
                record: old.cloned(),
                delete: false,
            };
        }
        NotFoundAnswer::Counts => {}
    }
    let rec = match old {
        Some(r) => NotFoundRecord {
            count: r.count.saturating_add(1),
            since: r.since.clone(),
        },
        None => NotFoundRecord {
            count: 1,
            since: api::time(now),
        },
    };
    NotFoundStep {
        delete: should_delete(&rec, now),
        record: Some(rec),
    }
}

/// The deletion rule of DESIGN §2.3: three not-founds in a row spanning at least ten minutes.
pub fn should_delete(rec: &NotFoundRecord, now: DateTime<Utc>) -> bool {
    rec.count >= 3 && now - api::from_time(&rec.since) >= chrono::Duration::minutes(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::SecretMetadata;
    use crate::value::SecretBytes;

    fn ok() -> Result<FetchedSecret, ProviderError> {
        Ok(FetchedSecret {
            value: SecretBytes::from("v"),
            meta: SecretMetadata::default(),
        })
    }

    fn nf(k: &str) -> Result<FetchedSecret, ProviderError> {
        Err(ProviderError::NotFound { key: k.into() })
    }

    #[test]
    fn partial_not_found_never_counts() {
        let f = fold_reads([
            (RemoteRef::latest("a"), ok()),
            (RemoteRef::latest("b"), nf("b")),
        ])
        .unwrap_err();
        assert!(!f.all_not_found);
        let f = fold_reads([
            (RemoteRef::latest("a"), nf("a")),
            (
                RemoteRef::latest("b"),
                Err(ProviderError::AccessDenied {
                    key: None,
                    message: "no".into(),
                }),
            ),
        ])
        .unwrap_err();
        assert!(!f.all_not_found);
        assert_eq!(f.error.reason(), crate::api::Reason::AccessDenied);
        let f = fold_reads([
            (RemoteRef::latest("a"), nf("a")),
            (RemoteRef::latest("b"), nf("b")),
        ])
        .unwrap_err();
        assert!(f.all_not_found);
    }

    #[test]
    fn deletion_needs_three_not_founds_over_ten_minutes() {
        let t0 = Utc::now();
        let rec = |count, mins_ago: i64| NotFoundRecord {
            count,
            since: api::time(t0 - chrono::Duration::minutes(mins_ago)),
        };
        assert!(!should_delete(&rec(2, 60), t0));
        assert!(!should_delete(&rec(3, 9), t0));
        assert!(should_delete(&rec(3, 10), t0));
        assert!(should_delete(&rec(7, 120), t0));
        let s = not_found_step(Some(&rec(2, 11)), NotFoundAnswer::Counts, t0);
        assert!(s.delete);
        let s = not_found_step(Some(&rec(2, 11)), NotFoundAnswer::Breaks, t0);
        assert_eq!(s.record, None);
        assert!(!s.delete);
        // Outside a refresh slot the same answer neither counts nor breaks the streak.
        let s = not_found_step(Some(&rec(2, 11)), NotFoundAnswer::Holds, t0);
        assert_eq!(s.record, Some(rec(2, 11)));
        assert!(!s.delete);
        assert_eq!(NotFoundAnswer::of(true, false), NotFoundAnswer::Holds);
        assert_eq!(NotFoundAnswer::of(true, true), NotFoundAnswer::Counts);
        assert_eq!(NotFoundAnswer::of(false, true), NotFoundAnswer::Breaks);
    }
}
