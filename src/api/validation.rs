//! Validation of specs beyond what the CRD schema enforces, shared by the controller and `check`.
//!
//! The API server enforces the schema and CEL rules for objects applied to a cluster; this module
//! repeats those rules (so `secretsync check` catches them offline and the controller stays safe on
//! clusters where validation was bypassed) and adds the ones a schema cannot express.

use std::collections::BTreeSet;

use super::{
    CreationPolicy, DataFrom, DeletionPolicy, ProviderSpec, SecretRefSpec, ValueType,
    ValueValidation, duration,
};

/// One problem with a spec: the field path (as in `kubectl explain`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// e.g. `spec.data[2].secretKey`.
    pub field: String,
    /// e.g. `"a b" is not a valid Secret key`.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Whether `key` is a valid key of a Kubernetes Secret's data.
pub fn is_valid_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Whether `name` is a valid DNS-1123 subdomain (names of Secrets and most objects).
pub fn is_dns1123_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Validates a SecretRef spec; an empty result means valid.
pub fn validate_secretref(spec: &SecretRefSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut push = |field: String, message: String| errs.push(FieldError { field, message });

    if spec.store_ref.name.is_empty() {
        push("spec.storeRef.name".into(), "must not be empty".into());
    }
    if let Some(ri) = &spec.refresh_interval
        && let Err(e) = duration::parse(ri)
    {
        push("spec.refreshInterval".into(), e.to_string());
    }
    if let Some(wb) = spec.expiry.as_ref().and_then(|e| e.warn_before.as_ref())
        && let Err(e) = duration::parse(wb)
    {
        push("spec.expiry.warnBefore".into(), e.to_string());
    }
    let has_template = spec.target.as_ref().is_some_and(|t| t.template.is_some());
    if spec.data.is_empty() && spec.data_from.is_empty() && !has_template {
        push(
            "spec".into(),
            "at least one of data, dataFrom or target.template must be set".into(),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, item) in spec.data.iter().enumerate() {
        if !is_valid_secret_key(&item.secret_key) {
            push(
                format!("spec.data[{i}].secretKey"),
                format!(
                    "{:?} is not a valid Secret key (letters, digits, '-', '_', '.')",
                    item.secret_key
                ),
            );
        }
        if !seen.insert(item.secret_key.as_str()) {
            push(
                format!("spec.data[{i}].secretKey"),
                format!("{:?} is used twice", item.secret_key),
            );
        }
        if item.remote_ref.key.is_empty() {
            push(
                format!("spec.data[{i}].remoteRef.key"),
                "must not be empty".into(),
            );
        }
        if let Some(p) = &item.remote_ref.property
            && let Err(e) = crate::api::syntax::property_path(p)
        {
            push(format!("spec.data[{i}].remoteRef.property"), e.to_string());
        }
        if let Some(v) = &item.validate {
            validate_value_checks(&format!("spec.data[{i}].validate"), v, &mut push);
        }
    }
    for (i, df) in spec.data_from.iter().enumerate() {
        validate_data_from(i, df, &mut errs);
    }
    if let Some(t) = &spec.target {
        for (what, keys) in [("labels", &t.labels), ("annotations", &t.annotations)] {
            for k in keys.keys().filter(|k| crate::api::is_reserved_key(k)) {
                errs.push(FieldError {
                    field: format!("spec.target.{what}"),
                    message: format!(
                        "{k:?} is reserved: keys under secretsync.io/ and app.kubernetes.io/managed-by mark what secretsync owns"
                    ),
                });
            }
        }
        if let Some(name) = &t.name
            && !is_dns1123_subdomain(name)
        {
            errs.push(FieldError {
                field: "spec.target.name".into(),
                message: format!("{name:?} is not a valid Secret name (lowercase DNS subdomain)"),
            });
        }
        if t.type_.as_deref() == Some("kubernetes.io/service-account-token") {
            errs.push(FieldError {
                field: "spec.target.type".into(),
                message: "secretsync never writes service-account-token Secrets".into(),
            });
        }
        if t.deletion_policy == Some(DeletionPolicy::Delete)
            && t.creation_policy.unwrap_or_default() != CreationPolicy::Owner
        {
            errs.push(FieldError {
                field: "spec.target.deletionPolicy".into(),
                message: "Delete requires creationPolicy Owner".into(),
            });
        }
        if let Some(tpl) = &t.template {
            for (key, source) in &tpl.data {
                if !is_valid_secret_key(key) {
                    errs.push(FieldError {
                        field: format!("spec.target.template.data.{key}"),
                        message: format!("{key:?} is not a valid Secret key"),
                    });
                }
                if let Err(e) = crate::api::syntax::template(key, source) {
                    errs.push(FieldError {
                        field: format!("spec.target.template.data.{key}"),
                        message: e,
                    });
                }
            }
            for (key, v) in &tpl.validate {
                let field = format!("spec.target.template.validate.{key}");
                if !tpl.data.contains_key(key) {
                    errs.push(FieldError {
                        field: field.clone(),
                        message: format!("{key:?} is not a key of spec.target.template.data"),
                    });
                }
                validate_value_checks(&field, v, &mut |field, message| {
                    errs.push(FieldError { field, message })
                });
            }
        }
    }
    errs
}

/// The rules of one `validate` block at `field`.
fn validate_value_checks(field: &str, v: &ValueValidation, push: &mut impl FnMut(String, String)) {
    if let (Some(min), Some(max)) = (v.min_length, v.max_length)
        && min > max
    {
        push(
            format!("{field}.minLength"),
            format!("minLength {min} exceeds maxLength {max}"),
        );
    }
    if let Some(p) = &v.pattern
        && let Err(e) = crate::api::syntax::value_pattern(p)
    {
        push(format!("{field}.pattern"), e);
    }
    if !v.required_properties.is_empty() && v.type_.is_some_and(|t| t != ValueType::Json) {
        push(
            format!("{field}.requiredProperties"),
            "requiredProperties needs type json (or no type)".into(),
        );
    }
    if v.required_properties.iter().any(String::is_empty) {
        push(
            format!("{field}.requiredProperties"),
            "property names must not be empty".into(),
        );
    }
}

fn validate_data_from(i: usize, df: &DataFrom, errs: &mut Vec<FieldError>) {
    match (&df.extract, &df.find) {
        (Some(_), Some(_)) | (None, None) => errs.push(FieldError {
            field: format!("spec.dataFrom[{i}]"),
            message: "exactly one of extract or find must be set".into(),
        }),
        (Some(ex), None) => {
            if ex.key.is_empty() {
                errs.push(FieldError {
                    field: format!("spec.dataFrom[{i}].extract.key"),
                    message: "must not be empty".into(),
                });
            }
            if let Some(p) = &ex.property
                && let Err(e) = crate::api::syntax::property_path(p)
            {
                errs.push(FieldError {
                    field: format!("spec.dataFrom[{i}].extract.property"),
                    message: e.to_string(),
                });
            }
        }
        (None, Some(f)) => {
            if let Some(n) = &f.name
                && let Err(e) = crate::api::syntax::name_regexp(&n.regexp)
            {
                errs.push(FieldError {
                    field: format!("spec.dataFrom[{i}].find.name.regexp"),
                    message: e.to_string(),
                });
            }
            if f.path.is_none() && f.name.is_none() && f.tags.is_empty() {
                errs.push(FieldError {
                    field: format!("spec.dataFrom[{i}].find"),
                    message: "needs at least one of path, name or tags".into(),
                });
            }
        }
    }
}

/// Validates a store's provider block; an empty result means valid.
pub fn validate_provider(
    provider: &ProviderSpec,
    refresh_interval: Option<&str>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if provider.count() != 1 {
        errs.push(FieldError {
            field: "spec.provider".into(),
            message: "exactly one provider must be set: aws, azureKeyVault, vault, file or fake"
                .into(),
        });
    }
    if let Some(ri) = refresh_interval
        && let Err(e) = duration::parse(ri)
    {
        errs.push(FieldError {
            field: "spec.refreshInterval".into(),
            message: e.to_string(),
        });
    }
    if let Some(aws) = &provider.aws
        && let Some(auth) = &aws.auth
    {
        if auth.secret_ref.is_some() == auth.jwt.is_some() {
            errs.push(FieldError {
                field: "spec.provider.aws.auth".into(),
                message: "exactly one of secretRef or jwt must be set".into(),
            });
        }
        if auth.jwt.is_some() && aws.role.is_none() {
            errs.push(FieldError {
                field: "spec.provider.aws.role".into(),
                message: "auth.jwt exchanges the service account's token for a role: set role"
                    .into(),
            });
        }
    }
    if let Some(f) = &provider.file
        && f.config_map_ref.is_some() == f.path.is_some()
    {
        errs.push(FieldError {
            field: "spec.provider.file".into(),
            message: "exactly one of configMapRef or path must be set".into(),
        });
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DataItem, RemoteRefSpec, StoreRef, Target};

    fn spec_with_key(key: &str) -> SecretRefSpec {
        SecretRefSpec {
            store_ref: StoreRef {
                name: "s".into(),
                kind: None,
            },
            data: vec![DataItem {
                secret_key: key.into(),
                remote_ref: RemoteRefSpec {
                    key: "k".into(),
                    ..Default::default()
                },
                validate: None,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn secret_key_rules() {
        for ok in ["password", "a.b", "A_b-c", "tls.crt", "x"] {
            assert!(is_valid_secret_key(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "ä", ".", "..", &"x".repeat(254)] {
            assert!(!is_valid_secret_key(bad), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let errs = validate_secretref(&spec_with_key("bad key"));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.data[0].secretKey");
        assert!(errs[0].message.contains("bad key"));
    }

    #[test]
    fn delete_requires_owner_and_sa_tokens_are_refused() {
        let mut spec = spec_with_key("ok");
        spec.target = Some(Box::new(Target {
            creation_policy: Some(CreationPolicy::Merge),
            deletion_policy: Some(DeletionPolicy::Delete),
            type_: Some("kubernetes.io/service-account-token".into()),
            ..Default::default()
        }));
        let fields: Vec<_> = validate_secretref(&spec)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert!(fields.contains(&"spec.target.deletionPolicy".to_string()));
        assert!(fields.contains(&"spec.target.type".to_string()));
    }

    #[test]
    fn ownership_marks_are_reserved() {
        let mut spec = spec_with_key("ok");
        spec.target = Some(Box::new(Target {
            labels: [
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "secretsync".to_string(),
                ),
                ("team".to_string(), "a".to_string()),
            ]
            .into(),
            annotations: [("secretsync.io/owner".to_string(), "x".to_string())].into(),
            ..Default::default()
        }));
        let errs = validate_secretref(&spec);
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.target.labels", "spec.target.annotations"]);
        assert!(errs[0].message.contains("reserved"));
    }

    #[test]
    fn bad_durations_and_duplicate_keys() {
        let mut spec = spec_with_key("a");
        spec.data.push(spec.data[0].clone());
        spec.refresh_interval = Some("1 day".into());
        let fields: Vec<_> = validate_secretref(&spec)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            vec!["spec.refreshInterval", "spec.data[1].secretKey"]
        );
    }

    #[test]
    fn validate_blocks_are_checked() {
        use crate::api::{Template, ValueType, ValueValidation};
        let mut spec = spec_with_key("a");
        spec.data[0].validate = Some(ValueValidation {
            type_: Some(ValueType::Base64),
            min_length: Some(9),
            max_length: Some(3),
            pattern: Some("([a-z]".into()),
            required_properties: vec!["x".into()],
        });
        spec.target = Some(Box::new(Target {
            template: Some(Template {
                data: [("out".to_string(), "{{ a }}".to_string())].into(),
                merge_policy: None,
                validate: [("other".to_string(), ValueValidation::default())].into(),
            }),
            ..Default::default()
        }));
        let errs = validate_secretref(&spec);
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.data[0].validate.minLength",
                "spec.data[0].validate.pattern",
                "spec.data[0].validate.requiredProperties",
                "spec.target.template.validate.other",
            ]
        );
        assert!(errs[1].message.contains("RE2"), "{}", errs[1].message);
        assert!(!errs[1].message.contains('\n'), "{}", errs[1].message);
    }
}
