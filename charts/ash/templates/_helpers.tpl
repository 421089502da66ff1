{{/*
Names. Kubernetes names and label values are at most 63 characters.
*/}}
{{- define "ash.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name, plus the chart name unless the release name contains it
(`helm install ash ./charts/ash` names everything `ash`).
*/}}
{{- define "ash.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Headless Service for pod-to-pod Ray traffic; also the StatefulSet's serviceName.
*/}}
{{- define "ash.headlessName" -}}
{{- printf "%s-headless" (include "ash.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "ash.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ash.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ash.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ash.labels" -}}
helm.sh/chart: {{ include "ash.chart" . }}
{{ include "ash.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ash
{{- end }}

{{/*
Labels of the client-facing Service; the ServiceMonitor selects on them, so it never
scrapes the headless Service too.
*/}}
{{- define "ash.httpServiceSelector" -}}
{{ include "ash.selectorLabels" . }}
app.kubernetes.io/component: http
{{- end }}

{{- define "ash.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
Ray's ports between pods (pod 0 runs the head). `ash-ray serve` starts Ray with these.
*/}}
{{- define "ash.rayPorts" -}}
- name: gcs
  port: 6379
- name: dashboard
  port: 8265
- name: client
  port: 10001
- name: node-manager
  port: 6380
- name: object-manager
  port: 6381
- name: ray-metrics
  port: 8080
{{- end }}

{{- define "ash.rayHeadAddress" -}}
{{- printf "%s-0.%s.%s.svc.%s:6379" (include "ash.fullname" .) (include "ash.headlessName" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/*
Name of the Secret the keys come from: the user's existingSecret, the chart's own when a
key is given inline, else empty (no auth; Ash warns at start).
*/}}
{{- define "ash.secretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else if or .Values.auth.apiKey .Values.auth.anthropicApiKey }}
{{- include "ash.fullname" . }}
{{- end }}
{{- end }}

{{/*
Refuse values that would deploy something broken, saying why.
*/}}
{{- define "ash.validate" -}}
{{- $dbFromSecret := and .Values.auth.existingSecret .Values.auth.existingSecretKeys.databaseUrl }}
{{- $sharedDb := or (hasPrefix "postgres" .Values.ash.databaseUrl) $dbFromSecret }}
{{- if not $sharedDb }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail (printf "replicaCount=%d needs ash.databaseUrl: the default SQLite database lives on one pod's volume (/data) and cannot be shared between pods, so sessions would be lost or split. Set ash.databaseUrl to a postgresql:// URL (Postgres or CockroachDB), or keep replicaCount at 1." (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.maxReplicas) 1) }}
{{- fail (printf "autoscaling.maxReplicas=%d needs ash.databaseUrl: the default SQLite database lives on one pod's volume (/data) and cannot be shared between pods. Set ash.databaseUrl to a postgresql:// URL (Postgres or CockroachDB), or set autoscaling.maxReplicas to 1." (int .Values.autoscaling.maxReplicas)) }}
{{- end }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail (printf "autoscaling.minReplicas=%d is above autoscaling.maxReplicas=%d." (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- end }}
{{- if and .Values.auth.existingSecret (or .Values.auth.apiKey .Values.auth.anthropicApiKey) }}
{{- fail "auth.existingSecret and inline keys (auth.apiKey / auth.anthropicApiKey) are both set: keep the keys in the existing Secret and remove the inline ones." }}
{{- end }}
{{- end }}

{{/*
Environment of the Ash container: the settings `ash-ray serve` reads (ASH_*), then the
keys from the Secret, then ash.extraEnv.
*/}}
{{- define "ash.env" -}}
- name: ASH_HOST
  value: "0.0.0.0"
- name: ASH_PORT
  value: {{ .Values.ash.port | int | quote }}
- name: ASH_DATA_DIR
  value: /data
- name: ASH_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: ASH_RAY_HEAD_ADDRESS
  value: {{ include "ash.rayHeadAddress" . | quote }}
{{- /* One AshIngress replica per pod: Serve runs a proxy only where a replica runs, and
every pod's readiness probe asks its own proxy. */}}
- name: ASH_SERVE_REPLICAS
  value: {{ ternary .Values.autoscaling.minReplicas .Values.replicaCount .Values.autoscaling.enabled | int | quote }}
- name: ASH_MAX_SANDBOXES
  value: {{ .Values.ash.maxSandboxes | int64 | quote }}
- name: ASH_IDLE_TIMEOUT_MS
  value: {{ .Values.ash.idleTimeoutMs | int64 | quote }}
- name: ASH_DRAIN_TIMEOUT_S
  value: {{ sub (int .Values.terminationGracePeriodSeconds) 8 | quote }}
{{- if not .Values.securityContext.privileged }}
- name: ASH_SANDBOX_LIMITS
  value: rlimit
{{- end }}
{{- /* Key names in the Secret: the user's for existingSecret, the chart's own for inline keys. */}}
{{- $secret := include "ash.secretName" . }}
{{- $keys := .Values.auth.existingSecretKeys }}
{{- if not .Values.auth.existingSecret }}
{{- $keys = dict "databaseUrl" "" "anthropicApiKey" (ternary "ANTHROPIC_API_KEY" "" (ne .Values.auth.anthropicApiKey "")) "apiKey" (ternary "ASH_API_KEY" "" (ne .Values.auth.apiKey "")) }}
{{- end }}
{{- if and $secret $keys.databaseUrl }}
- name: ASH_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.databaseUrl }}
{{- else if .Values.ash.databaseUrl }}
- name: ASH_DATABASE_URL
  value: {{ .Values.ash.databaseUrl | quote }}
{{- end }}
{{- if and $secret $keys.anthropicApiKey }}
- name: ANTHROPIC_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.anthropicApiKey }}
{{- end }}
{{- if and $secret $keys.apiKey }}
- name: ASH_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.apiKey }}
{{- end }}
{{- with .Values.ash.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Container security: privileged runs as root (cgroupfs belongs to root, and delegating
cgroup v2 subtrees per sandbox needs it); otherwise the image's non-root user, no
capabilities.
*/}}
{{- define "ash.containerSecurityContext" -}}
{{- if .Values.securityContext.privileged }}
privileged: true
runAsUser: 0
runAsNonRoot: false
{{- else }}
privileged: false
runAsUser: 1000
runAsGroup: 1000
runAsNonRoot: true
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
{{- end }}
{{- end }}
