//! Inline values from the store spec, for demos and tests (refused unless `--allow-inline-secrets`).

use async_trait::async_trait;

use super::{
    FetchedSecret, FindQuery, Provider, ProviderError, ProviderKind, RemoteRef, SecretMetadata,
    name_matches,
};
use crate::api::FakeProvider as FakeSpec;
use crate::value::SecretBytes;

/// Serves the `data` of a `fake` store.
pub struct FakeProvider {
    spec: FakeSpec,
}

impl FakeProvider {
    /// A provider over inline entries.
    pub fn new(spec: FakeSpec) -> Self {
        Self { spec }
    }
}

/// Builds a `fake` store's provider: only with `--allow-inline-secrets`.
pub fn from_spec(
    spec: &FakeSpec,
    cx: &super::build::BuildContext<'_>,
) -> Result<super::build::Built, super::build::ConfigError> {
    if !cx.allow_inline {
        return Err(super::build::ConfigError::InlineDisabled);
    }
    Ok(super::build::Built {
        provider: std::sync::Arc::new(FakeProvider::new(spec.clone())),
        fingerprint: String::new(),
        default_rate: None,
    })
}

#[async_trait]
impl Provider for FakeProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Fake
    }

    async fn get(&self, remote: &RemoteRef) -> Result<FetchedSecret, ProviderError> {
        let mut matches = self.spec.data.iter().filter(|e| e.key == remote.key);
        let entry = match &remote.version {
            None => matches.next_back(),
            Some(v) => matches.find(|e| e.version.as_deref().unwrap_or("1") == v),
        }
        .ok_or_else(|| ProviderError::NotFound {
            key: remote.key.clone(),
        })?;
        Ok(FetchedSecret {
            value: SecretBytes::new(entry.value.as_bytes().to_vec()),
            meta: SecretMetadata {
                version: Some(entry.version.clone().unwrap_or_else(|| "1".into())),
                ..Default::default()
            },
        })
    }

    async fn find(&self, query: &FindQuery) -> Result<Vec<String>, ProviderError> {
        let re = query.compiled_regexp()?;
        let mut keys: Vec<String> = self
            .spec
            .data
            .iter()
            .filter(|e| {
                name_matches(query, re.as_ref(), &e.key)
                    && query.tags.iter().all(|(k, v)| e.tags.get(k) == Some(v))
            })
            .map(|e| e.key.clone())
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    async fn validate(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FakeEntry;

    fn entry(key: &str, value: &str, version: Option<&str>) -> FakeEntry {
        FakeEntry {
            key: key.into(),
            value: value.into(),
            version: version.map(Into::into),
            tags: Default::default(),
        }
    }

    #[tokio::test]
    async fn latest_versions_and_not_found() {
        let p = FakeProvider::new(FakeSpec {
            data: vec![
                entry("a", "1", Some("1")),
                entry("a", "2", Some("2")),
                entry("b", "x", None),
            ],
        });
        assert_eq!(
            p.get(&RemoteRef::latest("a")).await.unwrap().value.expose(),
            b"2"
        );
        assert_eq!(
            p.get(&RemoteRef {
                key: "a".into(),
                version: Some("1".into())
            })
            .await
            .unwrap()
            .value
            .expose(),
            b"1"
        );
        assert!(matches!(
            p.get(&RemoteRef::latest("zz")).await,
            Err(ProviderError::NotFound { .. })
        ));
        let found = p
            .find(&FindQuery {
                path: Some("a".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(found, vec!["a"]);
    }
}
