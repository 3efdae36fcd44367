{{- /* Rules on namespaced objects: a ClusterRole in scope cluster, a Role in the watched namespace in scope namespace. */}}
{{- define "secretsync.namespacedRules" -}}
# Read: the API objects and the Secrets secretsync manages (metadata-only, label-selected watch).
- apiGroups: ["secretsync.io"]
  resources: ["secretrefs", "secretstores"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
# Write: status, the SecretRef finalizer, the target Secrets, events.
- apiGroups: ["secretsync.io"]
  resources: ["secretrefs/status", "secretstores/status"]
  verbs: ["patch", "update"]
- apiGroups: ["secretsync.io"]
  resources: ["secretrefs"]
  verbs: ["patch", "update"]
- apiGroups: ["secretsync.io"]
  resources: ["secretrefs/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.rbac.workloadRestarts }}
# Rotation restarts (spec.rotation.restart): find the workloads using a Secret, patch their pod template.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get", "list", "patch"]
{{- end }}
{{- if .Values.rbac.serviceAccountTokens }}
# Stores that authenticate with a service account's token (TokenRequest).
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
{{- end }}
{{- end }}
{{- /* Rules on cluster-scoped objects: needed in both scopes (ClusterSecretStores are cluster-wide). */}}
{{- define "secretsync.clusterRules" -}}
- apiGroups: ["secretsync.io"]
  resources: ["clustersecretstores"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["secretsync.io"]
  resources: ["clustersecretstores/status"]
  verbs: ["patch", "update"]
# ClusterSecretStore conditions[].namespaceSelector: the SecretRef's namespace labels.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get"]
{{- end }}
{{- /* The ClusterSecretRef fan-out (scope cluster only): it creates, updates and deletes the SecretRefs of
ClusterSecretRefs in any namespace it selects. */}}
{{- define "secretsync.fanoutRules" -}}
- apiGroups: ["secretsync.io"]
  resources: ["clustersecretrefs"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["secretsync.io"]
  resources: ["clustersecretrefs/status"]
  verbs: ["patch", "update"]
- apiGroups: ["secretsync.io"]
  resources: ["secretrefs"]
  verbs: ["create", "delete"]
# Namespace labels select where ClusterSecretRefs fan out to (metadata-only watch).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
