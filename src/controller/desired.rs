//! Building the desired Secret from a SecretRef and a complete set of provider answers (pure).
//!
//! [`plan`] lists what to read; the controller (or `render`) reads it all; [`build`] turns the answers
//! into a [`DesiredSecret`] or a [`BuildError`] naming the field at fault. Nothing here does IO, so the
//! whole decision is unit- and property-tested.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::{property, template};
use crate::api::{self, Reason, SecretRefSpec, SyncedKey, TemplateMergePolicy, validation};
use crate::audit::HmacKey;
use crate::providers::{FetchedSecret, FindQuery, RemoteRef};
use crate::validate::{self, CertInfo, ValidateError};
use crate::value::SecretBytes;

/// What a SecretRef needs read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Values to read (deduplicated, in first-use order).
    pub reads: Vec<RemoteRef>,
    /// Searches to run, by index into `spec.dataFrom`.
    pub finds: Vec<(usize, FindQuery)>,
}

/// Lists the reads and searches of a spec.
pub fn plan(spec: &SecretRefSpec) -> Plan {
    let mut p = Plan::default();
    let add = |r: RemoteRef, p: &mut Plan| {
        if !p.reads.contains(&r) {
            p.reads.push(r);
        }
    };
    for (i, df) in spec.data_from.iter().enumerate() {
        if let Some(ex) = &df.extract {
            add(
                RemoteRef {
                    key: ex.key.clone(),
                    version: ex.version.clone(),
                },
                &mut p,
            );
        }
        if let Some(f) = &df.find {
            p.finds.push((i, find_query(f)));
        }
    }
    for item in &spec.data {
        add(
            RemoteRef {
                key: item.remote_ref.key.clone(),
                version: item.remote_ref.version.clone(),
            },
            &mut p,
        );
    }
    p
}

/// The provider query of a `find`.
pub fn find_query(f: &api::FindSpec) -> FindQuery {
    FindQuery {
        path: f.path.clone(),
        name_regexp: f.name.as_ref().map(|n| n.regexp.clone()),
        tags: f.tags.clone(),
    }
}

/// The complete answers for a plan: every read succeeded and every search returned its key list.
#[derive(Debug, Default, Clone)]
pub struct Answers {
    /// Value per read.
    pub values: HashMap<RemoteRef, FetchedSecret>,
    /// Found remote keys per `dataFrom` index (their values are in `values` under their latest version).
    pub found: HashMap<usize, Vec<String>>,
}

/// The Secret a SecretRef should produce.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredSecret {
    /// Secret name.
    pub name: String,
    /// Secret type.
    pub type_: String,
    /// The data.
    pub data: BTreeMap<String, SecretBytes>,
    /// User labels (ownership labels are added when applying).
    pub labels: BTreeMap<String, String>,
    /// User annotations (the data-hmac annotation is added when applying).
    pub annotations: BTreeMap<String, String>,
    /// Whether to mark it immutable.
    pub immutable: bool,
    /// Provenance and HMAC per key, sorted by key.
    pub synced_keys: Vec<SyncedKey>,
    /// HMAC of the whole data.
    pub data_hmac: String,
    /// Nearest provider-reported expiry among the values used.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why a desired Secret could not be built: a stable reason, the field at fault, and a message
/// without values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BuildError {
    /// Stable category (condition/event reason).
    pub reason: Reason,
    /// The spec field at fault.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(reason: Reason, field: impl Into<String>, message: impl Into<String>) -> BuildError {
    BuildError {
        reason,
        field: field.into(),
        message: message.into(),
    }
}

/// Maps a remote name found by `find` to a Secret key: leading `/` dropped, other characters that
/// Kubernetes rejects replaced by `_`.
pub fn key_for_found_name(name: &str) -> String {
    name.trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A value that fails validation, as a build error at `field` (a bad pattern is the spec's fault).
fn invalid_value(field: String, e: ValidateError) -> BuildError {
    match &e {
        ValidateError::Invalid { .. } => err(Reason::InvalidValue, field, e.to_string()),
        ValidateError::Pattern { .. } => err(
            Reason::InvalidSpec,
            format!("{field}.pattern"),
            e.to_string(),
        ),
    }
}

struct Entry {
    value: SecretBytes,
    remote_key: Option<String>,
    version: Option<String>,
}

/// Builds the desired Secret. `answers` must be complete (the caller aborts on any failed read).
pub fn build(
    sref_name: &str,
    spec: &SecretRefSpec,
    answers: &Answers,
    hmac: &HmacKey,
) -> Result<DesiredSecret, BuildError> {
    if let Some(first) = validation::validate_secretref(spec).into_iter().next() {
        return Err(err(Reason::InvalidSpec, first.field, first.message));
    }
    let mut data: BTreeMap<String, Entry> = BTreeMap::new();
    // Certificate facts per Secret key (from `validate` and the built-in rules).
    let mut certs: BTreeMap<String, CertInfo> = BTreeMap::new();
    let mut expires: Option<DateTime<Utc>> = None;
    let mut note_expiry = |f: &FetchedSecret| {
        if let Some(e) = f.meta.expires {
            expires = Some(expires.map_or(e, |x: DateTime<Utc>| x.min(e)));
        }
    };
    let lookup = |r: &RemoteRef, field: &str| -> Result<&FetchedSecret, BuildError> {
        answers.values.get(r).ok_or_else(|| {
            err(
                Reason::RemoteKeyNotFound,
                field,
                format!("no answer for remote key {:?}", r.key),
            )
        })
    };

    for (i, df) in spec.data_from.iter().enumerate() {
        if let Some(ex) = &df.extract {
            let field = format!("spec.dataFrom[{i}].extract");
            let fetched = lookup(
                &RemoteRef {
                    key: ex.key.clone(),
                    version: ex.version.clone(),
                },
                &field,
            )?;
            note_expiry(fetched);
            let value = match &ex.property {
                Some(p) => property::select(&fetched.value, p).map_err(|e| {
                    err(
                        Reason::InvalidRemoteValue,
                        format!("{field}.property"),
                        e.to_string(),
                    )
                })?,
                None => fetched.value.clone(),
            };
            let Some(serde_json::Value::Object(map)) = property::parse_json(&value) else {
                return Err(err(
                    Reason::InvalidRemoteValue,
                    field,
                    format!(
                        "remote key {:?} is not a JSON object, so it cannot be extracted",
                        ex.key
                    ),
                ));
            };
            if map.is_empty() {
                return Err(err(
                    Reason::InvalidRemoteValue,
                    field,
                    format!("remote key {:?} is an empty JSON object", ex.key),
                ));
            }
            for (k, node) in &map {
                if !validation::is_valid_secret_key(k) {
                    return Err(err(
                        Reason::InvalidSecretKey,
                        field,
                        // The property's name is part of the value: never quoted.
                        format!(
                            "remote key {:?} has a property whose name is not a valid Secret key (letters, digits, '-', '_', '.')",
                            ex.key
                        ),
                    ));
                }
                data.insert(
                    k.clone(),
                    Entry {
                        value: property::node_to_bytes(node),
                        remote_key: Some(ex.key.clone()),
                        version: fetched.meta.version.clone(),
                    },
                );
            }
        }
        if df.find.is_some() {
            let field = format!("spec.dataFrom[{i}].find");
            let names = answers.found.get(&i).ok_or_else(|| {
                err(
                    Reason::ProviderUnavailable,
                    &field,
                    "the search did not complete",
                )
            })?;
            let mut seen: HashMap<String, &str> = HashMap::new();
            for name in names {
                let key = key_for_found_name(name);
                if !validation::is_valid_secret_key(&key) {
                    return Err(err(
                        Reason::InvalidSecretKey,
                        &field,
                        format!("found remote key {name:?} does not map to a valid Secret key"),
                    ));
                }
                if let Some(other) = seen.insert(key.clone(), name) {
                    return Err(err(
                        Reason::InvalidSecretKey,
                        &field,
                        format!(
                            "found remote keys {other:?} and {name:?} both map to Secret key {key:?}"
                        ),
                    ));
                }
                let fetched = lookup(&RemoteRef::latest(name.clone()), &field)?;
                note_expiry(fetched);
                data.insert(
                    key,
                    Entry {
                        value: fetched.value.clone(),
                        remote_key: Some(name.clone()),
                        version: fetched.meta.version.clone(),
                    },
                );
            }
        }
    }
    for (i, item) in spec.data.iter().enumerate() {
        let field = format!("spec.data[{i}].remoteRef");
        let r = RemoteRef {
            key: item.remote_ref.key.clone(),
            version: item.remote_ref.version.clone(),
        };
        let fetched = lookup(&r, &field)?;
        note_expiry(fetched);
        let value = match &item.remote_ref.property {
            Some(p) => property::select(&fetched.value, p).map_err(|e| {
                err(
                    Reason::InvalidRemoteValue,
                    format!("{field}.property"),
                    e.to_string(),
                )
            })?,
            None => fetched.value.clone(),
        };
        if let Some(v) = &item.validate {
            let facts = validate::check(&item.secret_key, &value, v)
                .map_err(|e| invalid_value(format!("spec.data[{i}].validate"), e))?;
            match facts {
                Some(f) => certs.insert(item.secret_key.clone(), f),
                None => certs.remove(&item.secret_key),
            };
        }
        data.insert(
            item.secret_key.clone(),
            Entry {
                value,
                remote_key: Some(r.key),
                version: fetched.meta.version.clone(),
            },
        );
    }

    let target = spec.target.clone().unwrap_or_default();
    if let Some(tpl) = &target.template {
        let inputs: BTreeMap<String, SecretBytes> = data
            .iter()
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect();
        let rendered = template::render(&tpl.data, &inputs)
            .map_err(|m| err(Reason::TemplateFailed, "spec.target.template", m))?;
        if tpl.merge_policy.unwrap_or_default() == TemplateMergePolicy::Replace {
            data.clear();
        }
        for (k, v) in &tpl.validate {
            let field = format!("spec.target.template.validate.{k}");
            let value = rendered.get(k).ok_or_else(|| {
                err(
                    Reason::InvalidSpec,
                    &field,
                    format!("{k:?} is not a key of spec.target.template.data"),
                )
            })?;
            match validate::check(k, value, v).map_err(|e| invalid_value(field, e))? {
                Some(f) => certs.insert(k.clone(), f),
                None => certs.remove(k),
            };
        }
        for (k, v) in rendered {
            data.insert(
                k,
                Entry {
                    value: v,
                    remote_key: None,
                    version: None,
                },
            );
        }
    }

    let mut total = 0usize;
    for (k, e) in &data {
        if e.value.is_empty() {
            return Err(err(
                Reason::EmptyValue,
                field_of(spec, k),
                format!("Secret key {k:?} would be empty; refusing to blank it"),
            ));
        }
        total += k.len() + e.value.len();
    }
    if data.is_empty() {
        return Err(err(
            Reason::EmptyValue,
            "spec",
            "the Secret would have no keys",
        ));
    }
    if total > api::MAX_SECRET_BYTES {
        return Err(err(
            Reason::SecretTooLarge,
            "spec",
            format!("the Secret would hold {total} bytes, over the 1 MiB Kubernetes limit"),
        ));
    }

    let type_ = target.type_.clone().unwrap_or_else(|| "Opaque".into());
    let mut entries: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    let values: BTreeMap<String, SecretBytes> = data
        .into_iter()
        .map(|(k, e)| {
            entries.insert(k.clone(), (e.remote_key, e.version));
            (k, e.value)
        })
        .collect();
    certs.extend(
        validate::builtin(&type_, &values)
            .map_err(|e| invalid_value("spec.target.type".into(), e))?,
    );
    // Only keys the Secret holds: a key consumed by a template is not there.
    certs.retain(|k, _| values.contains_key(k));
    for c in certs.values() {
        expires = Some(expires.map_or(c.not_after, |x: DateTime<Utc>| x.min(c.not_after)));
    }
    let synced_keys: Vec<SyncedKey> = values
        .iter()
        .map(|(k, v)| {
            let (remote_key, version) = entries.remove(k).unwrap_or_default();
            SyncedKey {
                secret_key: k.clone(),
                remote_key,
                version,
                hmac: hmac.key_hmac(k, v),
                certificate: certs.get(k).map(|c| api::CertificateFacts {
                    subject: c.subject.clone(),
                    sans: c.sans.clone(),
                    not_after: api::time(c.not_after),
                    count: c.count,
                }),
            }
        })
        .collect();
    let data_hmac = hmac.data_hmac_from_keys(
        synced_keys
            .iter()
            .map(|s| (s.secret_key.as_str(), s.hmac.as_str())),
    );
    Ok(DesiredSecret {
        name: target.name.clone().unwrap_or_else(|| sref_name.to_string()),
        type_,
        data: values,
        labels: target.labels.clone(),
        annotations: target.annotations.clone(),
        immutable: target.immutable.unwrap_or(false),
        synced_keys,
        data_hmac,
        expires_at: expires,
    })
}

fn field_of(spec: &SecretRefSpec, key: &str) -> String {
    spec.data
        .iter()
        .position(|d| d.secret_key == key)
        .map(|i| format!("spec.data[{i}].remoteRef"))
        .unwrap_or_else(|| "spec.dataFrom".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DataFrom, DataItem, RemoteRefSpec, StoreRef, Target, Template};
    use crate::providers::SecretMetadata;

    fn fetched(v: &str, ver: &str) -> FetchedSecret {
        FetchedSecret {
            value: SecretBytes::from(v),
            meta: SecretMetadata {
                version: Some(ver.into()),
                ..Default::default()
            },
        }
    }

    fn item(key: &str, remote: &str, prop: Option<&str>) -> DataItem {
        DataItem {
            secret_key: key.into(),
            remote_ref: RemoteRefSpec {
                key: remote.into(),
                property: prop.map(Into::into),
                version: None,
            },
            validate: None,
        }
    }

    fn spec(data: Vec<DataItem>) -> SecretRefSpec {
        SecretRefSpec {
            store_ref: StoreRef {
                name: "s".into(),
                kind: None,
            },
            data,
            ..Default::default()
        }
    }

    fn answers(pairs: &[(&str, &str, &str)]) -> Answers {
        Answers {
            values: pairs
                .iter()
                .map(|(k, v, ver)| (RemoteRef::latest(*k), fetched(v, ver)))
                .collect(),
            found: HashMap::new(),
        }
    }

    fn key() -> HmacKey {
        HmacKey::new(vec![9; 32])
    }

    #[test]
    fn builds_data_properties_and_defaults() {
        let s = spec(vec![
            item("password", "/db", Some("password")),
            item("raw", "/plain", None),
        ]);
        let d = build(
            "db",
            &s,
            &answers(&[
                ("/db", r#"{"password":"pw","user":"u"}"#, "v1"),
                ("/plain", "x", "v7"),
            ]),
            &key(),
        )
        .unwrap();
        assert_eq!(d.name, "db");
        assert_eq!(d.type_, "Opaque");
        assert_eq!(d.data["password"].expose(), b"pw");
        assert_eq!(d.data["raw"].expose(), b"x");
        assert_eq!(d.synced_keys[0].secret_key, "password");
        assert_eq!(d.synced_keys[0].version.as_deref(), Some("v1"));
        assert_eq!(d.synced_keys[1].version.as_deref(), Some("v7"));
    }

    #[test]
    fn plan_deduplicates_reads() {
        let s = spec(vec![
            item("a", "/db", Some("a")),
            item("b", "/db", Some("b")),
        ]);
        assert_eq!(plan(&s).reads, vec![RemoteRef::latest("/db")]);
    }

    #[test]
    fn extract_and_template() {
        let mut s = spec(vec![]);
        s.data_from = vec![DataFrom {
            extract: Some(RemoteRefSpec {
                key: "/db".into(),
                ..Default::default()
            }),
            find: None,
        }];
        s.target = Some(Box::new(Target {
            template: Some(Template {
                data: [(
                    "url".to_string(),
                    "pg://{{ user }}:{{ password }}@h".to_string(),
                )]
                .into(),
                merge_policy: None,
                validate: BTreeMap::new(),
            }),
            ..Default::default()
        }));
        let d = build(
            "x",
            &s,
            &answers(&[("/db", r#"{"password":"pw","user":"u"}"#, "1")]),
            &key(),
        )
        .unwrap();
        assert_eq!(d.data.keys().collect::<Vec<_>>(), vec!["url"]);
        assert_eq!(d.data["url"].expose(), b"pg://u:pw@h");
    }

    #[test]
    fn extract_never_quotes_property_names_of_the_value() {
        let mut s = spec(vec![]);
        s.data_from = vec![DataFrom {
            extract: Some(RemoteRefSpec {
                key: "/db".into(),
                ..Default::default()
            }),
            find: None,
        }];
        let e = build(
            "x",
            &s,
            &answers(&[("/db", r#"{"ok":"1","hunter2 is the password":"x"}"#, "1")]),
            &key(),
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::InvalidSecretKey);
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        assert!(e.message.contains("/db"), "{}", e.message);
    }

    #[test]
    fn missing_property_names_the_field() {
        let s = spec(vec![
            item("ok", "/a", None),
            item("pw", "/db", Some("password")),
        ]);
        let e = build(
            "x",
            &s,
            &answers(&[("/a", "1", "1"), ("/db", r#"{"user":"u"}"#, "1")]),
            &key(),
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::InvalidRemoteValue);
        assert_eq!(e.field, "spec.data[1].remoteRef.property");
    }

    #[test]
    fn refuses_empty_values_and_oversize_secrets() {
        let e = build(
            "x",
            &spec(vec![item("a", "/a", None)]),
            &answers(&[("/a", "", "1")]),
            &key(),
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::EmptyValue);
        let big = "x".repeat(600 * 1024);
        let e = build(
            "x",
            &spec(vec![item("a", "/a", None), item("b", "/b", None)]),
            &answers(&[("/a", &big, "1"), ("/b", &big, "1")]),
            &key(),
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::SecretTooLarge);
    }

    #[test]
    fn found_names_map_to_keys() {
        assert_eq!(
            key_for_found_name("/clarivum/prod/api-key"),
            "clarivum_prod_api-key"
        );
        let mut s = spec(vec![]);
        s.data_from = vec![DataFrom {
            extract: None,
            find: Some(crate::api::FindSpec {
                path: Some("/p/".into()),
                ..Default::default()
            }),
        }];
        let mut a = answers(&[("/p/a", "1", "1"), ("/p/b", "2", "1")]);
        a.found.insert(0, vec!["/p/a".into(), "/p/b".into()]);
        let d = build("x", &s, &a, &key()).unwrap();
        assert_eq!(d.data.keys().collect::<Vec<_>>(), vec!["p_a", "p_b"]);
    }

    #[test]
    fn data_hmac_changes_only_with_data() {
        let s = spec(vec![item("a", "/a", None)]);
        let d1 = build("x", &s, &answers(&[("/a", "1", "1")]), &key()).unwrap();
        let d2 = build("x", &s, &answers(&[("/a", "1", "2")]), &key()).unwrap();
        let d3 = build("x", &s, &answers(&[("/a", "2", "2")]), &key()).unwrap();
        assert_eq!(d1.data_hmac, d2.data_hmac);
        assert_ne!(d1.data_hmac, d3.data_hmac);
    }

    #[test]
    fn invalid_values_are_refused_naming_key_and_rule() {
        let mut s = spec(vec![item("cfg", "/cfg", None)]);
        s.data[0].validate = Some(api::ValueValidation {
            type_: Some(api::ValueType::Json),
            ..Default::default()
        });
        assert!(build("x", &s, &answers(&[("/cfg", r#"{"a":1}"#, "1")]), &key()).is_ok());
        let e = build(
            "x",
            &s,
            &answers(&[("/cfg", r#"{"secret-sentinel":"#, "2")]),
            &key(),
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::InvalidValue);
        assert_eq!(e.field, "spec.data[0].validate");
        assert!(e.message.contains("\"cfg\"") && e.message.contains("validate.type json"));
        assert!(!e.message.contains("sentinel"), "{}", e.message);
        // A pattern that does not compile is the spec's fault.
        s.data[0].validate = Some(api::ValueValidation {
            pattern: Some("(".into()),
            ..Default::default()
        });
        let e = build("x", &s, &answers(&[("/cfg", "x", "1")]), &key()).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidSpec);
        assert_eq!(e.field, "spec.data[0].validate.pattern");
    }

    #[test]
    fn template_outputs_and_secret_types_are_validated() {
        let mut s = spec(vec![item("user", "/u", None)]);
        s.target = Some(Box::new(Target {
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            template: Some(Template {
                data: [(
                    ".dockerconfigjson".to_string(),
                    r#"{"auths":{"r":{"username":"{{ user }}"}}}"#.to_string(),
                )]
                .into(),
                merge_policy: None,
                validate: [(
                    ".dockerconfigjson".to_string(),
                    api::ValueValidation {
                        max_length: Some(10),
                        ..Default::default()
                    },
                )]
                .into(),
            }),
            ..Default::default()
        }));
        let e = build("x", &s, &answers(&[("/u", "u", "1")]), &key()).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidValue);
        assert_eq!(e.field, "spec.target.template.validate..dockerconfigjson");
        if let Some(t) = s.target.as_mut().and_then(|t| t.template.as_mut()) {
            t.validate.clear();
            t.data
                .insert(".dockerconfigjson".into(), r#"{"x":1}"#.into());
        }
        let e = build("x", &s, &answers(&[("/u", "u", "1")]), &key()).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidValue);
        assert_eq!(e.field, "spec.target.type");
        assert!(e.message.contains("auths"), "{}", e.message);
    }

    #[test]
    fn certificate_not_after_feeds_expiry_and_status_facts() {
        let ca = testkit::tls::TestCa::new("Test CA").unwrap();
        let leaf = ca.server_cert(&["a.test.invalid"]).unwrap();
        let chain = format!("{}{}", leaf.cert_pem, ca.cert_pem);
        let mut s = spec(vec![
            item("tls.crt", "/crt", None),
            item("tls.key", "/key", None),
        ]);
        s.target = Some(Box::new(Target {
            type_: Some("kubernetes.io/tls".into()),
            ..Default::default()
        }));
        let mut a = answers(&[("/crt", &chain, "1"), ("/key", &leaf.key_pem, "1")]);
        let later = Utc::now() + chrono::Duration::days(1_000_000);
        if let Some(f) = a.values.get_mut(&RemoteRef::latest("/key")) {
            f.meta.expires = Some(later);
        }
        let d = build("x", &s, &a, &key()).unwrap();
        let facts = d.synced_keys[0].certificate.clone().unwrap();
        assert_eq!(facts.count, 2);
        assert_eq!(facts.sans, ["DNS:a.test.invalid"]);
        assert!(d.synced_keys[1].certificate.is_none());
        // The certificate expires before the provider-reported expiry: it wins.
        assert_eq!(d.expires_at.map(api::time), Some(facts.not_after));
        assert!(d.expires_at < Some(later));
        // A key of another certificate is refused.
        let other = ca.server_cert(&["b.test.invalid"]).unwrap();
        let a = answers(&[("/crt", &chain, "1"), ("/key", &other.key_pem, "1")]);
        let e = build("x", &s, &a, &key()).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidValue);
        assert!(e.message.contains("tls.key"), "{}", e.message);
    }
}
