//! JSON property paths: `db.password`, `hosts.0`, `a\.b` (an escaped dot).

use crate::value::SecretBytes;

/// Why a property could not be selected. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    /// The path text is malformed.
    #[error(transparent)]
    BadPath(#[from] crate::api::syntax::PathError),
    /// The value is not a JSON document.
    #[error("the value is not JSON, so property {path:?} cannot be selected")]
    NotJson {
        /// The path.
        path: String,
    },
    /// The path does not exist in the document.
    #[error("property {path:?} not found in the value")]
    Missing {
        /// The path.
        path: String,
    },
}

/// Splits a dotted path into segments ([`crate::api::syntax::property_path`]).
pub fn parse_path(path: &str) -> Result<Vec<String>, PropertyError> {
    Ok(crate::api::syntax::property_path(path)?)
}

/// Parses a value as JSON (bounded depth by serde_json's recursion limit).
pub fn parse_json(value: &SecretBytes) -> Option<serde_json::Value> {
    serde_json::from_slice(value.expose()).ok()
}

/// Turns a JSON node into Secret bytes: strings as their text, everything else as compact JSON.
pub fn node_to_bytes(node: &serde_json::Value) -> SecretBytes {
    match node {
        serde_json::Value::String(s) => SecretBytes::new(s.as_bytes().to_vec()),
        other => SecretBytes::new(serde_json::to_vec(other).unwrap_or_default()),
    }
}

/// Selects `path` inside the JSON `value`.
pub fn select(value: &SecretBytes, path: &str) -> Result<SecretBytes, PropertyError> {
    let segs = parse_path(path)?;
    let doc = parse_json(value).ok_or_else(|| PropertyError::NotJson {
        path: path.to_string(),
    })?;
    // An exact top-level key wins over a dotted walk (`{"a.b": 1}` with path `a.b`).
    if let Some(node) = doc.get(path) {
        return Ok(node_to_bytes(node));
    }
    let mut node = &doc;
    for seg in &segs {
        node = match node {
            serde_json::Value::Object(m) => m.get(seg.as_str()),
            serde_json::Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }
        .ok_or_else(|| PropertyError::Missing {
            path: path.to_string(),
        })?;
    }
    Ok(node_to_bytes(node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> SecretBytes {
        SecretBytes::from(s)
    }

    #[test]
    fn selects_nested_and_escaped() {
        let doc = v(
            r#"{"db":{"password":"p@ss","port":5432,"hosts":["a","b"]},"a.b":"dot","x":{"y.z":"esc"}}"#,
        );
        assert_eq!(select(&doc, "db.password").unwrap().expose(), b"p@ss");
        assert_eq!(select(&doc, "db.port").unwrap().expose(), b"5432");
        assert_eq!(select(&doc, "db.hosts.1").unwrap().expose(), b"b");
        assert_eq!(select(&doc, "db.hosts").unwrap().expose(), br#"["a","b"]"#);
        assert_eq!(select(&doc, "a.b").unwrap().expose(), b"dot");
        assert_eq!(select(&doc, r"x.y\.z").unwrap().expose(), b"esc");
    }

    #[test]
    fn errors_do_not_contain_the_value() {
        let doc = v(r#"{"user":"sentinel-value-123"}"#);
        let e = select(&doc, "password").unwrap_err();
        assert!(matches!(e, PropertyError::Missing { .. }));
        assert!(!e.to_string().contains("sentinel"));
        let e = select(&v("sentinel-value-123 not json"), "a").unwrap_err();
        assert!(matches!(e, PropertyError::NotJson { .. }));
        assert!(!e.to_string().contains("sentinel"));
    }

    #[test]
    fn malformed_paths() {
        for p in ["", ".a", "a.", "a..b", r"a\b"] {
            assert!(parse_path(p).is_err(), "{p:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_never_echoes(path in "\\PC{0,40}", body in "\\PC{0,80}") {
            let value = SecretBytes::from(body.as_str());
            if let Err(e) = select(&value, &path) {
                let msg = e.to_string();
                if body.len() > 8 && !path.contains(&body) {
                    prop_assert!(!msg.contains(&body));
                }
            }
        }

        #[test]
        fn round_trips_simple_objects(key in "[a-z]{1,10}", val in "[ -~]{0,30}") {
            let doc = serde_json::json!({ "outer": { key.clone(): val.clone() } });
            let bytes = SecretBytes::new(serde_json::to_vec(&doc).unwrap());
            let got = select(&bytes, &format!("outer.{key}")).unwrap();
            prop_assert_eq!(got.expose(), val.as_bytes());
        }
    }
}
