//! Kubernetes Events within the API server's limits (DESIGN §2.10). An `events.k8s.io/v1` note is at
//! most 1,024 bytes and a reason or action at most 128 characters: the real API server refuses the
//! whole event otherwise (a rotation of 80 keys once lost its `Rotated` event that way). Notes are
//! built to fit — lists are summarised as the first items and a count — and a refused event write
//! is a warning in the log and a metric, never silent.

use kube::runtime::events::{Event, Recorder};
use tracing::warn;

use super::error::kube_error_summary;
use crate::telemetry::Metrics;

/// Longest `note` the API server accepts (bytes).
pub const NOTE_LIMIT: usize = 1024;
/// Longest `reason` and `action` (bytes; ours are short ASCII).
pub const FIELD_LIMIT: usize = 128;

/// `text` cut to at most `limit` bytes on a character boundary, ending in `…` when cut.
pub fn fit(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    const MORE: &str = "…";
    let mut end = limit.saturating_sub(MORE.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MORE}", &text[..end])
}

/// The first `items` joined with ", " that fit in `budget` bytes, then " and N more" for the rest.
pub fn summarize(items: &[String], budget: usize) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        let rest = items.len() - i;
        let tail = if rest > 1 {
            format!(" and {} more", rest - 1)
        } else {
            String::new()
        };
        let sep = if out.is_empty() { "" } else { ", " };
        // Room for this item and, if more follow, the tail that would end the list.
        if out.len() + sep.len() + item.len() + tail.len() > budget {
            if out.is_empty() {
                return format!("{} items", items.len());
            }
            out.push_str(&format!(" and {rest} more"));
            return out;
        }
        out.push_str(sep);
        out.push_str(item);
    }
    out
}

/// Publishes `ev` about `reference` with its note, reason and action fitted to the API server's
/// limits. A refused write is logged as a warning and counted by event reason.
pub async fn publish(
    recorder: &Recorder,
    metrics: &Metrics,
    ev: &Event,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
) {
    let ev = Event {
        type_: ev.type_,
        reason: fit(&ev.reason, FIELD_LIMIT),
        note: ev.note.as_deref().map(|n| fit(n, NOTE_LIMIT)),
        action: fit(&ev.action, FIELD_LIMIT),
        secondary: ev.secondary.clone(),
    };
    if let Err(e) = recorder.publish(&ev, reference).await {
        metrics.event_write_failed(&ev.reason);
        warn!(reason = %ev.reason, error = %kube_error_summary(&e), "publishing event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_fit_on_a_character_boundary() {
        assert_eq!(fit("short", NOTE_LIMIT), "short");
        let long = "é".repeat(1000);
        let f = fit(&long, NOTE_LIMIT);
        assert!(f.len() <= NOTE_LIMIT, "{}", f.len());
        assert!(f.ends_with('…'));
        assert!(f.starts_with("éé"));
    }

    #[test]
    fn lists_are_summarised_to_the_budget() {
        let keys: Vec<String> = (0..80).map(|i| format!("key-{i:03}")).collect();
        let s = summarize(&keys, 100);
        assert!(s.len() <= 100, "{s}");
        assert!(s.starts_with("key-000, key-001"), "{s}");
        let shown = s.matches("key-").count();
        assert!(s.ends_with(&format!(" and {} more", 80 - shown)), "{s}");
        assert_eq!(summarize(&keys[..2], 100), "key-000, key-001");
        assert_eq!(summarize(&[], 100), "");
        assert_eq!(summarize(&keys, 5), "80 items");
    }
}
