//! Every reason secretsync reports: the `reason` of conditions and events and the `reason` label of
//! metrics. A fixed, low-cardinality set (never free text or object names). The README's reason table
//! and the Argo CD health check (`deploy/argocd/secretref-health.lua`) list the same set; a test keeps
//! them in agreement.

use serde::{Deserialize, Serialize};

macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// A stable reason (see the module docs).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Reason {
            $($(#[doc = $doc])* $name,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            /// The reason as it appears in conditions, events and metrics.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)*
                }
            }
        }
    };
}

reasons! {
    /// `Ready=True`: the Secret holds what the sources say.
    Synced,
    /// A store's `Ready=True`: credentials valid and provider reachable.
    Valid,
    /// Writes are paused by the `secretsync.io/paused` annotation.
    Paused,
    /// The spec cannot work as written (the condition names the field).
    InvalidSpec,
    /// The referenced store does not exist (in the SecretRef's namespace).
    StoreNotFound,
    /// A ClusterSecretStore's `conditions` do not admit the namespace.
    NamespaceNotAllowed,
    /// A remote key outside the ClusterSecretStore's `allowedKeyPrefixes`.
    KeyNotAllowed,
    /// A `fake` store while the controller runs without `--allow-inline-secrets`.
    InlineSecretsDisabled,
    /// The provider is not available in this build (or offline).
    ProviderUnsupported,
    /// The store or its credentials are unusable as configured.
    InvalidStoreConfig,
    /// The store's credentials could not be read right now.
    StoreUnavailable,
    /// The provider said authoritatively that a remote key does not exist.
    RemoteKeyNotFound,
    /// Credentials were rejected or lack permission.
    AccessDenied,
    /// The provider asked us to slow down.
    ProviderThrottled,
    /// A timeout, 5xx, connection failure or any other transient failure of the provider.
    ProviderUnavailable,
    /// The provider answered with something unusable (malformed payload, missing property).
    InvalidRemoteValue,
    /// The answers or the Secret would exceed the 1 MiB Kubernetes Secret limit.
    SecretTooLarge,
    /// A Secret key would be empty.
    EmptyValue,
    /// A value fails its `validate` checks or its Secret type's built-in rules (the condition names
    /// the key and the rule, never the value).
    InvalidValue,
    /// A remote name or property does not make a valid Secret key.
    InvalidSecretKey,
    /// A template failed to render.
    TemplateFailed,
    /// The target Secret exists and is not this SecretRef's.
    TargetConflict,
    /// The target Secret has another type (types cannot change).
    TargetTypeMismatch,
    /// The target Secret is immutable and holds other data.
    TargetImmutable,
    /// The Secret was edited outside secretsync (condition and event).
    Drifted,
    /// A Kubernetes API call failed.
    KubernetesError,
    /// The finalizer could not be added or removed.
    FinalizerError,
    /// This replica does not hold the leader lease, so it did not write (metrics only).
    NotLeader,
    /// A synced value expires soon (condition and event).
    Expiring,
    /// Synced data really changed (event).
    Rotated,
    /// A hand edit was reverted (event).
    DriftReverted,
    /// The Secret was deleted per `deletionPolicy: Delete` (event).
    SecretDeleted,
    /// A sync failed for a reason without an event of its own (event).
    SyncFailed,
    /// A workload was restarted after a rotation (event).
    RestartTriggered,
}

impl Reason {
    /// Whether `Ready=False` with this reason clears up by itself (retried with backoff, the last
    /// good data kept): Argo CD shows it as Progressing rather than Degraded.
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            Reason::ProviderThrottled
                | Reason::ProviderUnavailable
                | Reason::StoreUnavailable
                | Reason::KubernetesError
        )
    }

    /// The reason named `s`, if any.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_their_own_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()), "{r} twice");
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
            assert!(r.as_str().chars().all(|c| c.is_ascii_alphanumeric()));
        }
        assert_eq!(Reason::parse("Whatever"), None);
    }
}
