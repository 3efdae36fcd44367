//! Fault injection and request counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// What a matching fault rule does to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultAction {
    /// Delay the request, then serve it normally.
    Latency {
        /// Milliseconds of delay.
        ms: u64,
    },
    /// Answer 429 TooManyRequests with `Retry-After`.
    TooManyRequests {
        #[serde(default = "one")]
        /// Seconds in the `Retry-After` header (default 1).
        retry_after_seconds: u64,
    },
    /// Answer 500 InternalError.
    InternalError,
    /// Answer 503 ServiceUnavailable.
    ServiceUnavailable,
    /// Close the connection without sending a response.
    DropConnection,
    /// Answer 409 Conflict with the `Status` kube-apiserver sends when an optimistic-concurrency
    /// precondition fails ("Operation cannot be fulfilled on secrets \"x\": the object has been
    /// modified; ...", reason `Conflict`); the request is not applied. Only mutating verbs
    /// (create, update, patch, delete) can conflict: on get, list, watch and deletecollection the
    /// rule does not fire at all (it neither answers nor uses up its `count` or `probability` roll),
    /// so a rule without a `verb` filter faults just the writes.
    Conflict,
}

impl FaultAction {
    /// Whether this action can affect a request with `verb`.
    fn applies_to(&self, verb: &str) -> bool {
        match self {
            FaultAction::Conflict => matches!(verb, "create" | "update" | "patch" | "delete"),
            _ => true,
        }
    }
}

fn one() -> u64 {
    1
}

/// A fault rule. `None` (or `"*"`) filters match anything. `resource` is the
/// plural (`secrets`) or `plural/subresource` (`deployments/status`); a plain
/// plural also matches its subresources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    #[serde(default)]
    /// Only requests with this verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`).
    pub verb: Option<String>,
    #[serde(default)]
    /// Only requests on this resource (plural, or `plural/subresource`).
    pub resource: Option<String>,
    #[serde(default)]
    /// Only requests in this namespace.
    pub namespace: Option<String>,
    /// Chance (0..=1) that a matching request is affected; default 1.
    #[serde(default)]
    pub probability: Option<f64>,
    /// Fire at most this many times (then the rule is removed); default unlimited.
    #[serde(default)]
    pub count: Option<u64>,
    /// What happens to a matching request.
    pub action: FaultAction,
}

impl FaultRule {
    /// A rule that matches every request, always, until removed.
    pub fn new(action: FaultAction) -> Self {
        FaultRule {
            verb: None,
            resource: None,
            namespace: None,
            probability: None,
            count: None,
            action,
        }
    }
    /// Only requests with verb `v`.
    pub fn verb(mut self, v: &str) -> Self {
        self.verb = Some(v.into());
        self
    }
    /// Only requests on resource `r`.
    pub fn resource(mut self, r: &str) -> Self {
        self.resource = Some(r.into());
        self
    }
    /// Only requests in namespace `n`.
    pub fn namespace(mut self, n: &str) -> Self {
        self.namespace = Some(n.into());
        self
    }
    /// Affect a matching request with chance `p` (0..=1).
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = Some(p);
        self
    }
    /// Fire at most `n` times, then remove the rule.
    pub fn times(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    fn matches(&self, verb: &str, resource: &str, ns: Option<&str>) -> bool {
        let any = |f: &Option<String>| f.as_deref().is_none_or(|s| s == "*" || s.is_empty());
        (any(&self.verb) || self.verb.as_deref() == Some(verb))
            && (any(&self.resource)
                || self.resource.as_deref() == Some(resource)
                || resource
                    .split_once('/')
                    .is_some_and(|(p, _)| self.resource.as_deref() == Some(p)))
            && (any(&self.namespace) || self.namespace.as_deref() == ns)
    }
}

/// How an outage looks to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutageMode {
    /// The listening socket is closed: new connections are refused and open
    /// ones (including watches) are closed. The `/_emulator` admin endpoints
    /// are unreachable too, so end it with a duration or from the library.
    #[default]
    Refuse,
    /// Every Kubernetes request gets 503 ServiceUnavailable; watches are cut.
    Unavailable,
    /// Every Kubernetes request's connection is closed without a response; watches are cut.
    Drop,
}

#[derive(Default)]
struct State {
    rules: Vec<(u64, FaultRule)>,
    next_id: u64,
    expire_watches: u64,
    cut_every: Option<Duration>,
    outage_gen: u64,
}

/// Thread-safe fault injection switchboard; settable at any time.
#[derive(Clone)]
pub struct Faults {
    state: Arc<Mutex<State>>,
    outage: Arc<watch::Sender<Option<OutageMode>>>,
    cut: Arc<watch::Sender<u64>>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            state: Arc::new(Mutex::new(State::default())),
            outage: Arc::new(watch::channel(None).0),
            cut: Arc::new(watch::channel(0).0),
        }
    }
}

impl Faults {
    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add a rule; returns its id.
    pub fn add(&self, rule: FaultRule) -> u64 {
        let mut s = self.st();
        s.next_id += 1;
        let id = s.next_id;
        s.rules.push((id, rule));
        id
    }
    /// Remove the rule with this id; false if there was none.
    pub fn remove(&self, id: u64) -> bool {
        let mut s = self.st();
        let n = s.rules.len();
        s.rules.retain(|(i, _)| *i != id);
        s.rules.len() != n
    }
    /// The active rules with their ids.
    pub fn rules(&self) -> Vec<(u64, FaultRule)> {
        self.st().rules.clone()
    }
    /// Remove all rules, pending watch expiries and periodic watch cuts (not an outage).
    pub fn clear(&self) {
        let mut s = self.st();
        s.rules.clear();
        s.expire_watches = 0;
        s.cut_every = None;
    }
    /// End every open watch stream now (cleanly, like a server-side timeout).
    pub fn cut_watches(&self) {
        self.cut.send_modify(|g| *g += 1);
    }
    /// End every watch stream this long after it starts (None = never).
    pub fn cut_watches_every(&self, every: Option<Duration>) {
        self.st().cut_every = every;
        self.cut_watches();
    }
    /// The next `n` watch requests get an ERROR event with 410 Gone (Expired).
    pub fn expire_next_watches(&self, n: u64) {
        self.st().expire_watches += n;
    }
    /// Start an API outage: every request fails as `mode` says and open watches end.
    pub fn outage_start(&self, mode: OutageMode) {
        self.st().outage_gen += 1;
        self.outage.send_replace(Some(mode));
        self.cut_watches();
    }
    /// End the outage.
    pub fn outage_end(&self) {
        self.st().outage_gen += 1;
        self.outage.send_replace(None);
    }
    /// The outage in progress, if any.
    pub fn outage(&self) -> Option<OutageMode> {
        *self.outage.borrow()
    }
    /// An outage that ends by itself (must be called within a Tokio runtime).
    pub fn outage_for(&self, d: Duration, mode: OutageMode) {
        self.outage_start(mode);
        let g = self.st().outage_gen;
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            if me.st().outage_gen == g {
                me.outage_end();
            }
        });
    }

    /// Actions for a request: latencies first, then at most one terminal action.
    pub(crate) fn evaluate(
        &self,
        verb: &str,
        resource: &str,
        ns: Option<&str>,
    ) -> Vec<FaultAction> {
        let mut s = self.st();
        if s.rules.is_empty() {
            return vec![];
        }
        let mut out = Vec::new();
        let mut terminal = false;
        let mut exhausted = Vec::new();
        for (id, r) in s.rules.iter_mut() {
            if !r.matches(verb, resource, ns) || !r.action.applies_to(verb) {
                continue;
            }
            let is_terminal = !matches!(r.action, FaultAction::Latency { .. });
            if is_terminal && terminal {
                continue;
            }
            if let Some(p) = r.probability
                && rand::random::<f64>() >= p
            {
                continue;
            }
            if let Some(c) = r.count.as_mut() {
                if *c == 0 {
                    continue;
                }
                *c -= 1;
                if *c == 0 {
                    exhausted.push(*id);
                }
            }
            terminal |= is_terminal;
            out.push(r.action.clone());
        }
        s.rules.retain(|(i, _)| !exhausted.contains(i));
        out.sort_by_key(|a| !matches!(a, FaultAction::Latency { .. }));
        out
    }
    pub(crate) fn take_expire(&self) -> bool {
        let mut s = self.st();
        if s.expire_watches > 0 {
            s.expire_watches -= 1;
            true
        } else {
            false
        }
    }
    pub(crate) fn cut_every(&self) -> Option<Duration> {
        self.st().cut_every
    }
    pub(crate) fn cut_rx(&self) -> watch::Receiver<u64> {
        self.cut.subscribe()
    }
    pub(crate) fn outage_rx(&self) -> watch::Receiver<Option<OutageMode>> {
        self.outage.subscribe()
    }
}

/// Snapshot of request counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Requests by (verb, resource); resource is `plural` or `plural/subresource`.
    pub requests: BTreeMap<(String, String), u64>,
    /// create + update + patch + delete + deletecollection requests.
    pub writes: u64,
    /// All counted requests.
    pub total: u64,
}

impl Counters {
    /// Requests served with `verb` on `resource`.
    pub fn get(&self, verb: &str, resource: &str) -> u64 {
        self.requests
            .get(&(verb.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0)
    }
    /// Sum over resources for one verb.
    pub fn verb(&self, verb: &str) -> u64 {
        self.requests
            .iter()
            .filter(|((v, _), _)| v == verb)
            .map(|(_, n)| n)
            .sum()
    }
    /// JSON form: `{"requests": {"list secrets": 3, ...}, "writes": n, "total": n}`.
    pub fn to_json(&self) -> serde_json::Value {
        let req: serde_json::Map<String, serde_json::Value> = self
            .requests
            .iter()
            .map(|((v, r), n)| (format!("{v} {r}"), serde_json::json!(n)))
            .collect();
        serde_json::json!({"requests": req, "writes": self.writes, "total": self.total})
    }
}

#[derive(Default)]
pub(crate) struct CounterStore {
    map: Mutex<HashMap<(&'static str, String), u64>>,
    writes: AtomicU64,
    total: AtomicU64,
}

impl CounterStore {
    pub fn inc(&self, verb: &'static str, resource: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if matches!(
            verb,
            "create" | "update" | "patch" | "delete" | "deletecollection"
        ) {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(&(verb, resource.to_string())) {
            Some(n) => *n += 1,
            None => {
                m.insert((verb, resource.to_string()), 1);
            }
        }
    }
    pub fn snapshot(&self) -> Counters {
        let m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        Counters {
            requests: m
                .iter()
                .map(|((v, r), n)| ((v.to_string(), r.clone()), *n))
                .collect(),
            writes: self.writes.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
        }
    }
    pub fn reset(&self) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.writes.store(0, Ordering::Relaxed);
        self.total.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_count_and_match() {
        let f = Faults::default();
        f.add(
            FaultRule::new(FaultAction::TooManyRequests {
                retry_after_seconds: 1,
            })
            .verb("list")
            .resource("secrets")
            .times(1),
        );
        f.add(FaultRule::new(FaultAction::Latency { ms: 5 }).resource("secrets"));
        assert_eq!(f.evaluate("get", "configmaps", None), vec![]);
        let a = f.evaluate("list", "secrets", Some("x"));
        assert_eq!(a.len(), 2);
        assert!(matches!(a[0], FaultAction::Latency { .. }));
        assert_eq!(f.evaluate("list", "secrets", None).len(), 1);
        let j: FaultRule =
            serde_json::from_str(r#"{"verb":"get","action":{"type":"drop_connection"}}"#).unwrap();
        assert_eq!(j.action, FaultAction::DropConnection);
    }

    #[test]
    fn conflict_fires_on_writes_only() {
        let f = Faults::default();
        let id = f.add(
            FaultRule::new(FaultAction::Conflict)
                .resource("secrets")
                .times(3),
        );
        for verb in ["get", "list", "watch", "deletecollection"] {
            assert_eq!(f.evaluate(verb, "secrets", Some("x")), vec![], "{verb}");
        }
        // reads did not use up the budget
        assert_eq!(f.rules()[0].1.count, Some(3));
        assert_eq!(
            f.evaluate("patch", "secrets/status", None),
            vec![FaultAction::Conflict]
        );
        assert_eq!(
            f.evaluate("update", "secrets", None),
            vec![FaultAction::Conflict]
        );
        assert_eq!(
            f.evaluate("create", "secrets", None),
            vec![FaultAction::Conflict]
        );
        assert!(!f.remove(id), "exhausted after three writes");
        assert_eq!(f.evaluate("delete", "secrets", None), vec![]);
        let j: FaultRule =
            serde_json::from_str(r#"{"resource":"secretrefs","action":{"type":"conflict"}}"#)
                .unwrap();
        assert_eq!(j.action, FaultAction::Conflict);
    }
}
