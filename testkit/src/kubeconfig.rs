//! Kubeconfig files pointing at the emulator.

/// A kubeconfig for `server` with context `emulator` (no TLS, dummy token).
pub(crate) fn render(server: &str, namespace: Option<&str>) -> String {
    let ns = namespace
        .map(|n| format!("    namespace: {n}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: emulator
  cluster:
    server: {server}
contexts:
- name: emulator
  context:
    cluster: emulator
    user: emulator
{ns}current-context: emulator
preferences: {{}}
users:
- name: emulator
  user:
    token: kube-emulator
"
    )
}
