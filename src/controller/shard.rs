//! Static shards (`--watch-label-selector`, docs/scaling.md): a controller serves only the SecretRefs
//! whose labels match its selector. Each shard is its own Deployment with its own Lease; the selectors
//! of the shards of one cluster must not overlap.
//!
//! This module parses and checks the selector (the Kubernetes label-selector syntax: `k=v`, `k==v`,
//! `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, comma-separated, all must hold) before the
//! controller starts, so a typo is an error naming the flag rather than a watch the API server refuses
//! (or, worse, one that silently selects nothing). It also decides whether the ClusterSecretRef
//! fan-out may run in this shard ([`ShardSelector::admits_generated`]).

use std::collections::BTreeSet;

use kube::core::{Expression, Selector, SelectorExt};

use crate::api::CLUSTER_SECRETREF_LABEL;

/// The label the documented shard layout puts on SecretRefs (`secretsync.io/shard=<shard>`); the
/// controller reads only its selector, whatever the key.
pub const SHARD_LABEL: &str = "secretsync.io/shard";

/// A checked `--watch-label-selector`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSelector {
    selector: Selector,
    expressions: Vec<Expression>,
    text: String,
}

/// Why a selector was refused (names the requirement; a selector holds no secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("requirement {requirement:?}: {reason}")]
pub struct SelectorError {
    /// The requirement (one comma-separated term) that is wrong.
    pub requirement: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ShardSelector {
    /// Parses and checks a label selector. An empty selector (or only blanks) is refused: it would
    /// select everything, which is what leaving the flag out already means.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let terms = split_terms(text).map_err(|reason| SelectorError {
            requirement: text.trim().to_string(),
            reason,
        })?;
        if terms.is_empty() {
            return Err(SelectorError {
                requirement: String::new(),
                reason: "the selector is empty (leave the flag out to serve every SecretRef)"
                    .into(),
            });
        }
        let mut expressions = Vec::with_capacity(terms.len());
        for term in terms {
            let e = parse_term(&term).map_err(|reason| SelectorError {
                requirement: term.clone(),
                reason,
            })?;
            expressions.push(e);
        }
        let selector = Selector::from_iter(expressions.clone());
        Ok(Self {
            text: selector.to_string(),
            selector,
            expressions,
        })
    }

    /// The selector in the form sent to the API server (`labelSelector=`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether an object with these labels belongs to this shard.
    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.selector.matches(labels)
    }

    /// Whether every SecretRef the ClusterSecretRef fan-out generates belongs to this shard. Those
    /// carry exactly one label, `secretsync.io/cluster-secretref=<name of the ClusterSecretRef>` (any
    /// name), so this holds only for selectors made of requirements every such label set meets:
    /// `!k`, `k!=v` and `k notin (..)` on any other key, and `secretsync.io/cluster-secretref` (exists).
    /// The fan-out works from this shard's SecretRef cache, so it runs only where that cache holds
    /// every SecretRef it generates: the shard whose selector is, e.g., `!secretsync.io/shard`.
    pub fn admits_generated(&self) -> bool {
        self.expressions.iter().all(|e| match e {
            Expression::DoesNotExist(k) | Expression::NotEqual(k, _) | Expression::NotIn(k, _) => {
                k != CLUSTER_SECRETREF_LABEL
            }
            Expression::Exists(k) => k == CLUSTER_SECRETREF_LABEL,
            Expression::Equal(..) | Expression::In(..) => false,
        })
    }
}

impl std::fmt::Display for ShardSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether the ClusterSecretRef fan-out may run under this selector (always without one).
pub fn runs_fanout(selector: Option<&ShardSelector>) -> bool {
    selector.is_none_or(ShardSelector::admits_generated)
}

/// Splits at top-level commas (not those inside `( )`).
fn split_terms(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut depth = 0u32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                if depth > 0 {
                    return Err("nested parentheses".into());
                }
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| "a ')' without its '('".to_string())?;
                cur.push(c);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if depth != 0 {
        return Err("a '(' without its ')'".into());
    }
    out.push(cur);
    let terms: Vec<String> = out.iter().map(|t| t.trim().to_string()).collect();
    if terms.len() > 1 && terms.iter().any(String::is_empty) {
        return Err("an empty requirement (two commas in a row, or a comma at an end)".into());
    }
    Ok(terms.into_iter().filter(|t| !t.is_empty()).collect())
}

fn parse_term(term: &str) -> Result<Expression, String> {
    if let Some(k) = term.strip_prefix('!') {
        let k = k.trim();
        check_key(k)?;
        return Ok(Expression::DoesNotExist(k.to_string()));
    }
    if let Some((k, rest)) = split_set_op(term, "notin") {
        check_key(&k)?;
        return Ok(Expression::NotIn(k, parse_set(rest)?));
    }
    if let Some((k, rest)) = split_set_op(term, "in") {
        check_key(&k)?;
        return Ok(Expression::In(k, parse_set(rest)?));
    }
    for (op, negated) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((k, v)) = term.split_once(op) {
            let (k, v) = (k.trim(), v.trim());
            check_key(k)?;
            check_value(v)?;
            return Ok(if negated {
                Expression::NotEqual(k.into(), v.into())
            } else {
                Expression::Equal(k.into(), v.into())
            });
        }
    }
    if term.contains(['<', '>', '(', ')', ' ', '\t']) {
        return Err(
            "not a requirement: use k=v, k!=v, k in (a,b), k notin (a,b), k or !k (no < or >)"
                .into(),
        );
    }
    check_key(term)?;
    Ok(Expression::Exists(term.to_string()))
}

/// `key <op> (…)` with `op` a whole word.
fn split_set_op<'a>(term: &'a str, op: &str) -> Option<(String, &'a str)> {
    let mut words = term.splitn(2, char::is_whitespace);
    let key = words.next()?.trim();
    let rest = words.next()?.trim_start();
    let after = rest.strip_prefix(op)?;
    (after.trim_start().starts_with('(')).then(|| (key.to_string(), after.trim()))
}

fn parse_set(s: &str) -> Result<BTreeSet<String>, String> {
    let inner = s
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a set in parentheses, got {s:?}"))?;
    let mut set = BTreeSet::new();
    for v in inner.split(',') {
        let v = v.trim();
        check_value(v)?;
        set.insert(v.to_string());
    }
    if set.iter().all(String::is_empty) {
        return Err("an empty set".into());
    }
    Ok(set)
}

/// A label name part: at most 63 characters, alphanumerics with `-`, `_`, `.` inside.
fn is_name(s: &str, allow_empty: bool) -> bool {
    if s.is_empty() {
        return allow_empty;
    }
    let b = s.as_bytes();
    s.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain (the optional prefix of a label key).
fn is_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn check_key(k: &str) -> Result<(), String> {
    let ok = match k.split_once('/') {
        Some((prefix, name)) => is_subdomain(prefix) && is_name(name, false),
        None => is_name(k, false),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{k:?} is not a label key ([prefix/]name: name at most 63 characters of [A-Za-z0-9-_.], \
             starting and ending alphanumeric; prefix a DNS subdomain)"
        ))
    }
}

fn check_value(v: &str) -> Result<(), String> {
    if is_name(v, true) {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not a label value (at most 63 characters of [A-Za-z0-9-_.], starting and \
             ending alphanumeric)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_requirement_form() {
        let cases = [
            ("secretsync.io/shard=a", "secretsync.io/shard=a"),
            ("secretsync.io/shard == a", "secretsync.io/shard=a"),
            ("secretsync.io/shard!=a", "secretsync.io/shard!=a"),
            ("!secretsync.io/shard", "!secretsync.io/shard"),
            ("team", "team"),
            (
                "secretsync.io/shard in (b, a)",
                "secretsync.io/shard in (a,b)",
            ),
            ("tier notin (x),team=pay", "tier notin (x),team=pay"),
            (
                " team = pay , !secretsync.io/shard ",
                "team=pay,!secretsync.io/shard",
            ),
        ];
        for (input, normal) in cases {
            let s = ShardSelector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(s.as_str(), normal, "{input}");
            // The normal form parses to the same selector.
            assert_eq!(ShardSelector::parse(s.as_str()).unwrap(), s);
        }
    }

    #[test]
    fn refuses_what_the_api_server_would_refuse_or_misread() {
        for bad in [
            "",
            "  ",
            "a=b,",
            ",a=b",
            "a=b,,c=d",
            "in (a)",
            "a in ()",
            "a in (b",
            "a in b)",
            "a in ((b))",
            "a > 3",
            "a=b c",
            "-a=b",
            "a=b-",
            "Example.COM/a=b",
            "a/b/c=d",
            "secretsync.io/=a",
            &format!("k={}", "v".repeat(64)),
            &format!("{}=v", "k".repeat(64)),
            "a=b=c",
        ] {
            let e = ShardSelector::parse(bad);
            assert!(e.is_err(), "{bad:?} was accepted as {e:?}");
        }
        let e = ShardSelector::parse("secretsync.io/shard=a,tier=-x").unwrap_err();
        assert_eq!(e.requirement, "tier=-x");
        assert!(e.to_string().contains("tier=-x"), "{e}");
    }

    #[test]
    fn matching_follows_kubernetes_semantics() {
        let a = ShardSelector::parse("secretsync.io/shard=a").unwrap();
        assert!(a.matches(&labels(&[("secretsync.io/shard", "a")])));
        assert!(!a.matches(&labels(&[("secretsync.io/shard", "b")])));
        assert!(!a.matches(&labels(&[])));
        let rest = ShardSelector::parse("!secretsync.io/shard").unwrap();
        assert!(rest.matches(&labels(&[])));
        assert!(rest.matches(&labels(&[(CLUSTER_SECRETREF_LABEL, "db")])));
        assert!(!rest.matches(&labels(&[("secretsync.io/shard", "a")])));
        let not_in = ShardSelector::parse("secretsync.io/shard notin (a,b)").unwrap();
        assert!(not_in.matches(&labels(&[])));
        assert!(not_in.matches(&labels(&[("secretsync.io/shard", "c")])));
        assert!(!not_in.matches(&labels(&[("secretsync.io/shard", "b")])));
    }

    #[test]
    fn the_fanout_runs_only_where_every_generated_secretref_is_served() {
        assert!(runs_fanout(None));
        for (sel, runs) in [
            ("!secretsync.io/shard", true),
            ("secretsync.io/shard notin (a,b)", true),
            ("secretsync.io/shard!=a", true),
            ("secretsync.io/cluster-secretref", true),
            ("!secretsync.io/shard,secretsync.io/cluster-secretref", true),
            ("secretsync.io/shard=a", false),
            ("secretsync.io/shard in (a)", false),
            ("team", false),
            ("!secretsync.io/cluster-secretref", false),
            ("secretsync.io/cluster-secretref=db", false),
            ("secretsync.io/cluster-secretref notin (db)", false),
            ("!secretsync.io/shard,team=x", false),
        ] {
            let s = ShardSelector::parse(sel).unwrap();
            assert_eq!(runs_fanout(Some(&s)), runs, "{sel}");
            // Consistent with matching: where the fan-out runs, its SecretRefs match.
            if runs {
                assert!(s.matches(&labels(&[(CLUSTER_SECRETREF_LABEL, "any-name")])));
            }
        }
    }
}
