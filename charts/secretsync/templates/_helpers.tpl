{{/* Full name of every object: the release name, plus "-secretsync" unless it already contains it. */}}
{{- define "secretsync.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "secretsync.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "secretsync.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "secretsync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "secretsync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "secretsync.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The namespace the controller watches in scope "namespace". */}}
{{- define "secretsync.watchNamespace" -}}
{{- default .Release.Namespace .Values.watchNamespace -}}
{{- end -}}

{{- define "secretsync.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Health port (/livez, /readyz): fixed, distinct from the metrics port. */}}
{{- define "secretsync.healthPort" -}}8081{{- end -}}

{{/* Name prefix of cluster-scoped objects (ClusterRoles, bindings): in scope "namespace" it includes the
release namespace, so one release per namespace does not collide with another of the same name. */}}
{{- define "secretsync.clusterName" -}}
{{- if eq .Values.scope "namespace" -}}
{{- printf "%s-%s" (include "secretsync.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- include "secretsync.fullname" . -}}
{{- end -}}
{{- end -}}
