//! Tenancy rules (pure): which namespaces may use a ClusterSecretStore, and for which keys.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::ClusterStoreCondition;

/// Whether `labels` satisfy a label selector (matchLabels and matchExpressions).
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .as_ref()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let exprs_ok = sel.match_expressions.as_ref().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let values = e.values.clone().unwrap_or_default();
            match e.operator.as_str() {
                "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => labels.contains_key(&e.key),
                "DoesNotExist" => !labels.contains_key(&e.key),
                _ => false, // unknown operators admit nothing
            }
        })
    });
    labels_ok && exprs_ok
}

/// Whether one condition admits a namespace. A condition with neither selector nor names admits nothing.
pub fn condition_admits(
    c: &ClusterStoreCondition,
    namespace: &str,
    ns_labels: &BTreeMap<String, String>,
) -> bool {
    c.namespaces.iter().any(|n| n == namespace)
        || c.namespace_selector
            .as_ref()
            .is_some_and(|s| selector_matches(s, ns_labels))
}

/// The conditions admitting a namespace (empty: denied).
pub fn admitting<'a>(
    conditions: &'a [ClusterStoreCondition],
    namespace: &str,
    ns_labels: &BTreeMap<String, String>,
) -> Vec<&'a ClusterStoreCondition> {
    conditions
        .iter()
        .filter(|c| condition_admits(c, namespace, ns_labels))
        .collect()
}

/// Whether `key` may be read through one of the admitting conditions.
pub fn key_allowed(admitting: &[&ClusterStoreCondition], namespace: &str, key: &str) -> bool {
    admitting.iter().any(|c| {
        c.allowed_key_prefixes.is_empty()
            || c.allowed_key_prefixes.iter().any(|p| {
                let prefix = p.replace("{namespace}", namespace);
                !prefix.is_empty()
                    && key.starts_with(&prefix)
                    && !key[prefix.len()..].split('/').any(|seg| seg == "..")
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("team", "payments")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: Some(vec!["prod".into(), "dev".into()]),
            }]),
        };
        assert!(selector_matches(
            &sel,
            &labels(&[("team", "payments"), ("env", "dev")])
        ));
        assert!(!selector_matches(&sel, &labels(&[("team", "payments")])));
        assert!(!selector_matches(
            &sel,
            &labels(&[("team", "other"), ("env", "dev")])
        ));
    }

    #[test]
    fn admission_and_prefixes() {
        let conds = vec![ClusterStoreCondition {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(labels(&[("team", "payments")])),
                match_expressions: None,
            }),
            namespaces: vec!["payments-dev".into()],
            allowed_key_prefixes: vec!["/clarivum/{namespace}/".into()],
        }];
        assert_eq!(admitting(&conds, "payments-dev", &BTreeMap::new()).len(), 1);
        assert_eq!(
            admitting(&conds, "payments", &labels(&[("team", "payments")])).len(),
            1
        );
        assert!(admitting(&conds, "other", &BTreeMap::new()).is_empty());
        let a = admitting(&conds, "payments", &labels(&[("team", "payments")]));
        assert!(key_allowed(&a, "payments", "/clarivum/payments/db"));
        assert!(!key_allowed(&a, "payments", "/clarivum/other/db"));
        assert!(!key_allowed(
            &a,
            "payments",
            "/clarivum/payments/../other/db"
        ));
        // An empty condition admits nobody.
        assert!(admitting(&[ClusterStoreCondition::default()], "x", &BTreeMap::new()).is_empty());
    }
}
