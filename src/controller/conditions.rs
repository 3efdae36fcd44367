//! Conditions and status comparison (pure).

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::{Reason, SecretRefStatus};

/// Condition type of the main readiness condition.
pub const READY: &str = "Ready";
/// Condition type set while a hand edit is kept (driftPolicy Alert).
pub const DRIFTED: &str = "Drifted";
/// Condition type set while a synced value is within `expiry.warnBefore` of its expiry (or expired).
pub const EXPIRING: &str = "Expiring";

/// Sets (or replaces) a condition, keeping `lastTransitionTime` when the status did not flip.
pub fn set_condition(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: Reason,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status_s = if status { "True" } else { "False" };
    let old = conds.iter().find(|c| c.type_ == type_);
    let ltt = match old {
        Some(c) if c.status == status_s => c.last_transition_time.clone(),
        _ => crate::api::time(now),
    };
    let newc = Condition {
        type_: type_.to_string(),
        status: status_s.to_string(),
        reason: reason.as_str().to_string(),
        message: super::events::fit(message, 1024),
        observed_generation: generation,
        last_transition_time: ltt,
    };
    conds.retain(|c| c.type_ != type_);
    conds.push(newc);
    conds.sort_by(|a, b| a.type_.cmp(&b.type_));
}

/// Removes a condition.
pub fn clear_condition(conds: &mut Vec<Condition>, type_: &str) {
    conds.retain(|c| c.type_ != type_);
}

/// The condition of a type.
pub fn condition<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// `(status, reason)` of `Ready`.
pub fn ready(status: Option<&SecretRefStatus>) -> Option<(bool, String)> {
    status
        .and_then(|s| condition(&s.conditions, READY))
        .map(|c| (c.status == "True", c.reason.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_only_moves_on_flips() {
        let t0 = Utc::now() - chrono::Duration::hours(1);
        let t1 = Utc::now();
        let mut c = Vec::new();
        set_condition(&mut c, READY, true, Reason::Synced, "ok", Some(1), t0);
        set_condition(&mut c, READY, true, Reason::Synced, "ok again", Some(2), t1);
        assert_eq!(c[0].last_transition_time, crate::api::time(t0));
        set_condition(
            &mut c,
            READY,
            false,
            Reason::AccessDenied,
            "no",
            Some(2),
            t1,
        );
        assert_eq!(c[0].last_transition_time, crate::api::time(t1));
        assert_eq!(c.len(), 1);
    }
}
