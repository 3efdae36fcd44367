{{/* The chart's name: nameOverride, else the chart name. */}}
{{- define "secretsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of every object: fullnameOverride, else the release name plus "-<name>" unless the release
name already contains <name> (the chart name, or nameOverride). */}}
{{- define "secretsync.fullname" -}}
{{- $name := include "secretsync.name" . -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels: fixed for the life of a release (a Deployment's selector is immutable). */}}
{{- define "secretsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "secretsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object the chart renders: the chart's own, then commonLabels (which can never
replace the chart's own, so never a selector). */}}
{{- define "secretsync.labels" -}}
{{- include "secretsync.labelsWith" (list . dict) -}}
{{- end -}}

{{/* The same plus `extra` (a dict: podLabels, or a monitoring object's labels), which wins over
commonLabels. Call as (include "secretsync.labelsWith" (list . EXTRA)). */}}
{{- define "secretsync.labelsWith" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $ctx.Chart.Name $ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "secretsync.selectorLabels" $ctx }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/component: controller
{{- $own := list "helm.sh/chart" "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/version" "app.kubernetes.io/managed-by" "app.kubernetes.io/component" }}
{{- $more := dict }}
{{- range $k, $v := merge (deepCopy (default dict (index . 1))) (deepCopy (default dict $ctx.Values.commonLabels)) }}
{{- if not (has $k $own) }}
{{- $_ := set $more $k $v }}
{{- end }}
{{- end }}
{{- with $more }}
{{ toYaml . }}
{{- end }}
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

{{/* The image: repository@digest when image.digest is set (the tag is then ignored), else
repository:tag (default tag: the chart's appVersion). */}}
{{- define "secretsync.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Whether the PodDisruptionBudget is rendered: podDisruptionBudget.enabled true, or "auto" (the default)
with more than one replica. */}}
{{- define "secretsync.pdbEnabled" -}}
{{- $e := .Values.podDisruptionBudget.enabled -}}
{{- if kindIs "bool" $e -}}
{{- if $e }}true{{ end -}}
{{- else if and (eq (toString $e) "auto") (gt (int .Values.replicaCount) 1) -}}
true
{{- end -}}
{{- end -}}

{{/* Whether a monitoring.coreos.com/v1 object is rendered: it is enabled, and either the cluster serves
its kind (helm install/upgrade ask the cluster; `helm template` knows only what --api-versions says) or
`force` is set. Call as (include "secretsync.monitoring" (list . KIND ENABLED FORCE)); true or empty. */}}
{{- define "secretsync.monitoring" -}}
{{- $ctx := index . 0 -}}
{{- if and (index . 2) (or (index . 3) ($ctx.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" (index . 1)))) -}}
true
{{- end -}}
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
