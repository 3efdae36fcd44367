//! When to refresh and how long to back off (pure).
//!
//! Refreshes land on a per-object phase inside the refresh interval, derived from the object's uid:
//! the same object refreshes at the same offset before and after an operator restart, and ten
//! thousand objects spread evenly instead of aligning into a storm.

use std::hash::{Hash, Hasher};
use std::time::Duration;

/// Longest backoff after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// First backoff after a failure.
pub const BASE_BACKOFF: Duration = Duration::from_secs(5);

/// FNV-1a of `s`: stable across processes and Rust versions (std's SipHash keys are random per
/// process).
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Time from `now_ms` (Unix epoch milliseconds) to the object's next refresh slot.
pub fn until_next_refresh(now_ms: u64, uid: &str, interval: Duration) -> Duration {
    let period = interval.as_millis().max(1) as u64;
    let phase = stable_hash(uid) % period;
    let pos = (now_ms + period - phase) % period; // how far past the last slot we are
    Duration::from_millis(period - pos)
}

/// Backoff after `failures` consecutive failures: exponential from 5 s, capped at 5 minutes, with
/// ±20% jitter derived from `seed` (deterministic per object and attempt). A provider retry hint
/// raises it.
pub fn backoff(failures: u32, seed: &str, retry_after: Option<Duration>) -> Duration {
    let exp = BASE_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(10));
    let capped = exp.min(MAX_BACKOFF);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (stable_hash(seed), failures).hash(&mut h);
    let jitter = (h.finish() % 401) as f64 / 1000.0 - 0.2; // -0.2 ..= 0.2
    let d = capped.mul_f64(1.0 + jitter).min(MAX_BACKOFF);
    match retry_after {
        Some(ra) if ra > d => ra.min(MAX_BACKOFF),
        _ => d,
    }
}

/// First retry after a lost write race (see `reconcile::Error::Conflict`): 200 ms doubling per
/// consecutive failure, so a one-off race costs a fraction of a second and a persistent one still
/// backs off (to [`MAX_BACKOFF`]). ±20% deterministic jitter, like [`backoff`].
pub fn conflict_backoff(failures: u32, seed: &str) -> Duration {
    let exp = CONFLICT_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(10));
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (stable_hash(seed), failures, "conflict").hash(&mut h);
    let jitter = (h.finish() % 401) as f64 / 1000.0 - 0.2;
    exp.mul_f64(1.0 + jitter).min(MAX_BACKOFF)
}

/// Base of [`conflict_backoff`].
pub const CONFLICT_BACKOFF: Duration = Duration::from_millis(200);

/// Why a reconcile may read the provider (DESIGN §2.8b: at most once per scheduled refresh or
/// backoff step, whatever happens to the SecretRef's status; the controller's own status writes
/// wake it, and must not cost a read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadReasons {
    /// The `force-sync` annotation has a new value.
    pub forced: bool,
    /// The spec changed since the last read (or this process has not read for it yet).
    pub spec_changed: bool,
    /// The store's configuration or credentials changed since the last read.
    pub store_changed: bool,
    /// The store answered again after failures this SecretRef was waiting out.
    pub woken: bool,
    /// The target Secret no longer holds what status says was synced (a hand edit, a deletion).
    pub target_changed: bool,
}

impl ReadReasons {
    fn any(&self) -> bool {
        self.forced || self.spec_changed || self.store_changed || self.woken || self.target_changed
    }
}

/// Whether to read the provider now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadGate {
    /// Read. `scheduled`: the refresh slot came (only such reads count toward the not-found streak
    /// of `deletionPolicy: Delete`).
    Read {
        /// The refresh slot is due.
        scheduled: bool,
    },
    /// Not before this long: no reason to read yet.
    Wait(Duration),
}

/// The read decision (pure). `next_refresh`: the refresh slot (kept through failures);
/// `next_retry`: the end of the current backoff step after a failure (`None`: not failing).
pub fn read_gate<T>(
    now: T,
    next_refresh: Option<T>,
    next_retry: Option<T>,
    reasons: ReadReasons,
) -> ReadGate
where
    T: Copy + Ord + std::ops::Sub<T, Output = Duration>,
{
    let scheduled = next_refresh.is_some_and(|t| now >= t);
    if reasons.any() || scheduled || next_retry.is_some_and(|t| now >= t) {
        return ReadGate::Read { scheduled };
    }
    match (next_refresh, next_retry) {
        // Nothing known about this SecretRef in this process (a restart): read once.
        (None, None) => ReadGate::Read { scheduled: false },
        (a, b) => {
            let at = match (a, b) {
                (Some(a), Some(b)) => a.min(b),
                (Some(t), None) | (None, Some(t)) => t,
                (None, None) => now,
            };
            ReadGate::Wait(at - now)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slots_are_stable_and_spread() {
        let hour = Duration::from_secs(3600);
        let a = until_next_refresh(1_000_000, "uid-a", hour);
        // Same object, 10 s later: the same slot, 10 s closer.
        assert_eq!(
            until_next_refresh(1_010_000, "uid-a", hour) + Duration::from_secs(10),
            a
        );
        // 1000 objects spread over the hour: no 1-minute bucket holds more than 5%.
        let mut buckets = [0u32; 60];
        for i in 0..1000 {
            let d = until_next_refresh(0, &format!("uid-{i}"), hour);
            buckets[(d.as_secs() / 60).min(59) as usize] += 1;
        }
        assert!(buckets.iter().all(|b| *b < 50), "{buckets:?}");
    }

    #[test]
    fn conflict_retries_fast_then_backs_off() {
        // A lost race is retried within a quarter second, far below the 5 s failure backoff.
        let first = conflict_backoff(1, "uid-a");
        assert!(first >= Duration::from_millis(160) && first <= Duration::from_millis(240));
        assert!(first < backoff(1, "uid-a", None) / 10);
        // Persistent conflicts still back off, and never beyond the cap.
        assert!(conflict_backoff(5, "uid-a") >= Duration::from_millis(2560));
        assert!((1..40).all(|f| conflict_backoff(f, "uid-a") <= MAX_BACKOFF));
    }

    #[test]
    fn reads_wait_for_their_slot_or_step() {
        let s = |n: u64| Duration::from_secs(n);
        let none = ReadReasons::default();
        // A status write of our own wakes a failing SecretRef 1 s into a 5 s backoff step: wait.
        assert_eq!(
            read_gate(s(101), Some(s(3600)), Some(s(105)), none),
            ReadGate::Wait(s(4))
        );
        // The step is over: read (not a scheduled refresh).
        assert_eq!(
            read_gate(s(105), Some(s(3600)), Some(s(105)), none),
            ReadGate::Read { scheduled: false }
        );
        // The refresh slot: a scheduled read, even inside a long backoff step.
        assert_eq!(
            read_gate(s(3600), Some(s(3600)), Some(s(3700)), none),
            ReadGate::Read { scheduled: true }
        );
        // In sync and not due: wait for the slot.
        assert_eq!(
            read_gate(s(10), Some(s(70)), None, none),
            ReadGate::Wait(s(60))
        );
        // Nothing known (a restart): read once.
        assert_eq!(
            read_gate(s(10), None, None, none),
            ReadGate::Read { scheduled: false }
        );
        // Any reason reads at once.
        for r in [
            ReadReasons {
                forced: true,
                ..none
            },
            ReadReasons {
                spec_changed: true,
                ..none
            },
            ReadReasons {
                store_changed: true,
                ..none
            },
            ReadReasons {
                woken: true,
                ..none
            },
            ReadReasons {
                target_changed: true,
                ..none
            },
        ] {
            assert_eq!(
                read_gate(s(101), Some(s(3600)), Some(s(105)), r),
                ReadGate::Read { scheduled: false }
            );
        }
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert!(backoff(1, "x", None) <= Duration::from_secs(6));
        assert!(backoff(3, "x", None) >= Duration::from_secs(16));
        for f in 1..40 {
            assert!(backoff(f, "x", None) <= MAX_BACKOFF);
        }
        assert_eq!(
            backoff(1, "x", Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        assert_eq!(
            backoff(1, "x", Some(Duration::from_secs(3600))),
            MAX_BACKOFF
        );
    }

    proptest! {
        #[test]
        fn next_slot_is_within_one_interval(now in 0u64..10_000_000_000, secs in 1u64..100_000, uid in "[a-z0-9-]{1,36}") {
            let iv = Duration::from_secs(secs);
            let d = until_next_refresh(now, &uid, iv);
            prop_assert!(d > Duration::ZERO && d <= iv);
        }
    }
}
