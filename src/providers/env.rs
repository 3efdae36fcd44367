//! The `env` provider: values from `SECRETSYNC_*` environment variables of the CLI process.
//!
//! **CLI only.** There is no `env` block in the store API: `secretsync check` and `secretsync
//! render` serve a store named in the manifests from the environment when given
//! `--store-override NAME=env`. The controller never constructs this provider (a controller pod's
//! environment is not a secret store), and only `crate::cli` refers to it.
//!
//! # Mapping remote keys to variables
//!
//! A remote key maps to `SECRETSYNC_` followed by the key upper-cased, with every character that is
//! not an ASCII letter or digit replaced by `_`, and leading `_` dropped:
//!
//! | remote key       | variable                     |
//! |------------------|------------------------------|
//! | `db-password`    | `SECRETSYNC_DB_PASSWORD`     |
//! | `/prod/db`       | `SECRETSYNC_PROD_DB`         |
//! | `/prod/api.key`  | `SECRETSYNC_PROD_API_KEY`    |
//!
//! The mapping is not one-to-one (`db-password` and `db_password` read the same variable).
//!
//! - `get` reads the mapped variable; a missing variable is `NotFound`. The environment has no
//!   versions: a `remoteRef.version` is refused with `InvalidConfig` (reason `InvalidStoreConfig`)
//!   rather than silently serving the current value. No version is reported for values.
//! - `find` works on mapped names: each variable `SECRETSYNC_<NAME>` is the remote key `<NAME>`
//!   (which maps back to the same variable). `find.path` is mapped like a key (`/prod/` → `PROD_`)
//!   and matched as a prefix of `<NAME>`; `find.name.regexp` is matched against `<NAME>`. There
//!   are no tags: a find with tags matches nothing.
//! - Variables that configure secretsync itself ([`RESERVED`], e.g. `SECRETSYNC_MASTER_KEY`) are
//!   never served: a key mapping to one is `AccessDenied`, and `find` skips them.
//!
//! The environment is read once, when the provider is built ([`EnvProvider::from_process_env`]).

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{
    FetchedSecret, FindQuery, Provider, ProviderError, ProviderKind, RemoteRef, SecretMetadata,
    name_matches,
};
use crate::value::SecretBytes;

/// Prefix of every variable the provider serves.
pub const PREFIX: &str = "SECRETSYNC_";

/// Variables (and, for entries ending in `_`, variable prefixes) that configure secretsync and are
/// never served as values.
pub const RESERVED: &[&str] = &[
    "SECRETSYNC_MASTER_KEY",
    "SECRETSYNC_MASTER_KEY_FILE",
    "SECRETSYNC_MASTER_KEY_",
    "SECRETSYNC_HMAC_KEY_",
    "SECRETSYNC_E2E_",
    "SECRETSYNC_NAMESPACE",
    "SECRETSYNC_CONCURRENCY",
    "SECRETSYNC_ALLOW_INLINE_SECRETS",
    "SECRETSYNC_ALLOW_INSECURE_ENDPOINTS",
    "SECRETSYNC_DEFAULT_REFRESH_INTERVAL",
    "SECRETSYNC_LOG_FORMAT",
    "SECRETSYNC_LOG_LEVEL",
    "SECRETSYNC_METRICS_ADDR",
    "SECRETSYNC_HEALTH_ADDR",
];

/// Whether a variable configures secretsync (and so is never served).
pub fn is_reserved(var: &str) -> bool {
    RESERVED.iter().any(|r| {
        if r.ends_with('_') {
            var.starts_with(r)
        } else {
            var == *r
        }
    })
}

/// The part of the variable name after `SECRETSYNC_` for a remote key (or find path).
pub fn mapped_name(key: &str) -> String {
    let mapped: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    mapped.trim_start_matches('_').to_string()
}

/// The variable a remote key is read from.
pub fn variable_for(key: &str) -> String {
    format!("{PREFIX}{}", mapped_name(key))
}

/// Serves `SECRETSYNC_*` variables captured when it was built.
pub struct EnvProvider {
    /// Mapped name (variable without the prefix) → value; reserved variables excluded.
    vars: BTreeMap<String, SecretBytes>,
}

impl std::fmt::Debug for EnvProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvProvider")
            .field("variables", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl EnvProvider {
    /// Captures the `SECRETSYNC_*` variables of this process (names must be UTF-8; values may be
    /// any bytes on Unix).
    pub fn from_process_env() -> Self {
        Self::from_vars(std::env::vars_os().filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            #[cfg(unix)]
            let v = {
                use std::os::unix::ffi::OsStringExt;
                v.into_vec()
            };
            #[cfg(not(unix))]
            let v = v.into_string().ok()?.into_bytes();
            Some((k, SecretBytes::new(v)))
        }))
    }

    /// A provider over the given variables (only `SECRETSYNC_*`, non-reserved ones are kept).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, SecretBytes)>) -> Self {
        Self {
            vars: vars
                .into_iter()
                .filter(|(k, _)| !is_reserved(k))
                .filter_map(|(k, v)| {
                    let name = k.strip_prefix(PREFIX)?;
                    (!name.is_empty()).then(|| (name.to_string(), v))
                })
                .collect(),
        }
    }
}

#[async_trait]
impl Provider for EnvProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Env
    }

    async fn get(&self, remote: &RemoteRef) -> Result<FetchedSecret, ProviderError> {
        let var = variable_for(&remote.key);
        if let Some(v) = &remote.version {
            return Err(ProviderError::InvalidConfig {
                message: format!(
                    "the env provider has no versions, but version {v:?} of remote key {:?} ({var}) was asked for; remove remoteRef.version",
                    remote.key
                ),
            });
        }
        if is_reserved(&var) {
            return Err(ProviderError::AccessDenied {
                key: Some(remote.key.clone()),
                message: format!("{var} configures secretsync and is never served as a value"),
            });
        }
        let value = self
            .vars
            .get(&var[PREFIX.len()..])
            .ok_or_else(|| ProviderError::NotFound {
                key: remote.key.clone(),
            })?;
        Ok(FetchedSecret {
            value: value.clone(),
            meta: SecretMetadata::default(),
        })
    }

    async fn find(&self, query: &FindQuery) -> Result<Vec<String>, ProviderError> {
        let re = query.compiled_regexp()?;
        if !query.tags.is_empty() {
            return Ok(Vec::new());
        }
        let mapped = FindQuery {
            path: query.path.as_deref().map(mapped_name),
            ..query.clone()
        };
        Ok(self
            .vars
            .keys()
            .filter(|name| name_matches(&mapped, re.as_ref(), name))
            .cloned()
            .collect())
    }

    async fn validate(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(pairs: &[(&str, &str)]) -> EnvProvider {
        EnvProvider::from_vars(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), SecretBytes::from(*v))),
        )
    }

    #[test]
    fn mapping() {
        assert_eq!(variable_for("db-password"), "SECRETSYNC_DB_PASSWORD");
        assert_eq!(variable_for("/prod/db"), "SECRETSYNC_PROD_DB");
        assert_eq!(variable_for("/prod/api.key"), "SECRETSYNC_PROD_API_KEY");
        assert_eq!(variable_for("PROD_DB"), "SECRETSYNC_PROD_DB");
        assert_eq!(mapped_name("/prod/"), "PROD_");
        assert!(is_reserved("SECRETSYNC_MASTER_KEY"));
        assert!(is_reserved("SECRETSYNC_MASTER_KEY_FILE"));
        assert!(is_reserved("SECRETSYNC_HMAC_KEY_FILE"));
        assert!(!is_reserved("SECRETSYNC_MASTER"));
    }

    #[tokio::test]
    async fn get_find_versions_and_reserved() {
        let p = provider(&[
            ("SECRETSYNC_PROD_DB", "v1"),
            ("SECRETSYNC_PROD_API", "v2"),
            ("SECRETSYNC_DEV_DB", "v3"),
            ("SECRETSYNC_MASTER_KEY", "k"),
            ("HOME", "/root"),
        ]);
        let v = p.get(&RemoteRef::latest("/prod/db")).await.unwrap();
        assert_eq!(v.value.expose(), b"v1");
        assert_eq!(v.meta.version, None);
        assert!(matches!(
            p.get(&RemoteRef::latest("/prod/missing")).await,
            Err(ProviderError::NotFound { .. })
        ));
        assert!(matches!(
            p.get(&RemoteRef::latest("home")).await,
            Err(ProviderError::NotFound { .. })
        ));
        assert!(matches!(
            p.get(&RemoteRef::latest("master-key")).await,
            Err(ProviderError::AccessDenied { .. })
        ));
        let versioned = RemoteRef {
            key: "/prod/db".into(),
            version: Some("2".into()),
        };
        assert_eq!(
            p.get(&versioned).await.unwrap_err().reason(),
            crate::api::Reason::InvalidStoreConfig
        );
        let found = p
            .find(&FindQuery {
                path: Some("/prod/".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(found, vec!["PROD_API", "PROD_DB"]);
        // Found names read back the same variable.
        assert_eq!(
            p.get(&RemoteRef::latest(&found[1]))
                .await
                .unwrap()
                .value
                .expose(),
            b"v1"
        );
        let found = p
            .find(&FindQuery {
                name_regexp: Some("_DB$".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(found, vec!["DEV_DB", "PROD_DB"]);
        let tagged = FindQuery {
            path: Some("/".into()),
            tags: [("a".to_string(), "b".to_string())].into(),
            ..Default::default()
        };
        assert!(p.find(&tagged).await.unwrap().is_empty());
        assert!(!format!("{p:?}").contains("v1"));
    }
}
