{{/*
Named templates shared by the chart's resources. Every name is prefixed with the
chart name ("watchkeeper.") so that it cannot clash with a parent chart's.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "watchkeeper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The resource name prefix: <release>-<chart>, or the release name if it already holds the chart name. */}}
{{- define "watchkeeper.fullname" -}}
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

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "watchkeeper.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "watchkeeper.labels" -}}
helm.sh/chart: {{ include "watchkeeper.chart" . }}
{{ include "watchkeeper.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: watchkeeper
{{- end }}

{{/* Labels that select the release's pods. */}}
{{- define "watchkeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "watchkeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: (dict "context" $ "component" "serving"). */}}
{{- define "watchkeeper.componentLabels" -}}
{{ include "watchkeeper.labels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels of one component: (dict "context" $ "component" "serving"). */}}
{{- define "watchkeeper.componentSelectorLabels" -}}
{{ include "watchkeeper.selectorLabels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The container image reference. */}}
{{- define "watchkeeper.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The service account the pods run as. */}}
{{- define "watchkeeper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "watchkeeper.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the database URL and the admin token. */}}
{{- define "watchkeeper.secretName" -}}
{{- include "watchkeeper.fullname" . }}
{{- end }}

{{/* The bundled PostgreSQL's resource name. */}}
{{- define "watchkeeper.postgresqlName" -}}
{{- printf "%s-postgresql" (include "watchkeeper.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of the Secret holding the bundled PostgreSQL's password. */}}
{{- define "watchkeeper.postgresqlSecretName" -}}
{{- default (include "watchkeeper.postgresqlName" .) .Values.postgresql.existingSecret }}
{{- end }}

{{/* Secret and key of the external database's URL. */}}
{{- define "watchkeeper.databaseSecretRef" -}}
{{- if .Values.database.existingSecret -}}
name: {{ .Values.database.existingSecret }}
key: {{ .Values.database.existingSecretKey }}
{{- else if .Values.database.url -}}
name: {{ include "watchkeeper.secretName" . }}
key: database-url
{{- else -}}
name: {{ include "watchkeeper.fullname" . }}-database
key: {{ .Values.database.existingSecretKey }}
{{- end }}
{{- end }}

{{/* Whether an admin token is configured. */}}
{{- define "watchkeeper.hasAdminToken" -}}
{{- if or .Values.adminToken.value .Values.adminToken.existingSecret }}true{{ end }}
{{- end }}

{{/* Whether the chart itself must create the Secret (URL or token given as values). */}}
{{- define "watchkeeper.createSecret" -}}
{{- if or (include "watchkeeper.chartDatabaseUrl" .) (and .Values.adminToken.value (not .Values.adminToken.existingSecret)) }}true{{ end }}
{{- end }}

{{/* Whether the chart's Secret carries the external database URL. */}}
{{- define "watchkeeper.chartDatabaseUrl" -}}
{{- if and .Values.database.url (not .Values.database.existingSecret) (not .Values.postgresql.enabled) }}true{{ end }}
{{- end }}

{{/* Whether migrations run as a hook Job (external database) rather than init containers. */}}
{{- define "watchkeeper.migrationHook" -}}
{{- if and .Values.migrations.enabled (not .Values.postgresql.enabled) }}true{{ end }}
{{- end }}

{{/* The model store's claim name. */}}
{{- define "watchkeeper.modelStoreClaim" -}}
{{- default (printf "%s-models" (include "watchkeeper.fullname" .)) .Values.modelStore.existingClaim }}
{{- end }}

{{/*
Whether each serving replica keeps the prediction log's journal on its own claim, so
that it outlives the pod (a StatefulSet), rather than on an emptyDir (a Deployment).
*/}}
{{- define "watchkeeper.durableJournal" -}}
{{- if eq .Values.serving.journal.volume "persistentVolumeClaim" }}true{{ end }}
{{- end }}

{{/* The kind of the serving workload, for what names it (the HPA). */}}
{{- define "watchkeeper.servingKind" -}}
{{- if include "watchkeeper.durableJournal" . }}StatefulSet{{ else }}Deployment{{ end }}
{{- end }}

{{/* files/built-settings.yaml: the settings files/ was built from (scripts/sync-chart-files). */}}
{{- define "watchkeeper.builtSettings" -}}
{{- .Files.Get "files/built-settings.yaml" }}
{{- end }}

{{/* Refuse values that cannot work: fail rendering with the fix. */}}
{{- define "watchkeeper.validate" -}}
{{- $built := include "watchkeeper.builtSettings" . | fromYaml }}
{{- range $name, $_ := .Values.settings }}
{{- if has ($name | upper) $built.names }}
{{- fail (printf "settings.%s cannot be set in the chart: the alert rules and dashboards it ships are built with it, and would keep the old value. Set it when building them: WATCHKEEPER_%s=... make mixin in a copy of the repository, then install that copy of the chart, whose pods get it too (helm/README.md, Settings)" $name ($name | upper)) }}
{{- end }}
{{- end }}
{{- if hasKey .Values.serving "spillSizeLimit" }}
{{- fail "serving.spillSizeLimit is now serving.journal.size (serving.journal also chooses the journal's volume)" }}
{{- end }}
{{- if gt (add .Values.serving.preStopSeconds 2) (int .Values.serving.terminationGracePeriodSeconds) }}
{{- fail "serving.preStopSeconds must leave the server at least 2 s of serving.terminationGracePeriodSeconds to stop: lower it or raise the grace period" }}
{{- end }}
{{- if and .Values.postgresql.enabled (not (or .Values.postgresql.password .Values.postgresql.existingSecret)) }}
{{- fail "postgresql.enabled needs postgresql.password or postgresql.existingSecret" }}
{{- end }}
{{- end }}

{{/* Environment shared by every Watchkeeper container. */}}
{{- define "watchkeeper.env" -}}
- name: WATCHKEEPER_DATA_DIR
  value: /var/lib/watchkeeper
- name: WATCHKEEPER_PROMETHEUS_MULTIPROC_DIR
  value: /var/lib/watchkeeper/prometheus-multiproc
{{- /* Every interface, for the probes and the Services; set here rather than left to
the image, whose own defaults are for one host. Each process reads its own. */}}
- name: WATCHKEEPER_HOST
  value: 0.0.0.0
- name: WATCHKEEPER_MONITOR_HOST
  value: 0.0.0.0
- name: WATCHKEEPER_RETRAIN_HOST
  value: 0.0.0.0
- name: WATCHKEEPER_REGISTRY_PATH
  value: /var/lib/watchkeeper/models/registry
- name: WATCHKEEPER_DETECTORS_DIR
  value: /var/lib/watchkeeper/models/detectors
- name: WATCHKEEPER_AUTO_MIGRATE
  value: "false"
{{- if .Values.postgresql.enabled }}
{{- /* libpq reads the password from PGPASSWORD: no secret inside the URL. */}}
- name: WATCHKEEPER_DATABASE_URL
  value: {{ printf "postgresql+psycopg://%s@%s:5432/%s" .Values.postgresql.username (include "watchkeeper.postgresqlName" .) .Values.postgresql.database | quote }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "watchkeeper.postgresqlSecretName" . }}
      key: password
{{- else }}
- name: WATCHKEEPER_DATABASE_URL
  valueFrom:
    secretKeyRef:
      {{- include "watchkeeper.databaseSecretRef" . | nindent 6 }}
{{- end }}
{{- if include "watchkeeper.hasAdminToken" . }}
- name: WATCHKEEPER_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      {{- if .Values.adminToken.existingSecret }}
      name: {{ .Values.adminToken.existingSecret }}
      key: {{ .Values.adminToken.existingSecretKey }}
      {{- else }}
      name: {{ include "watchkeeper.secretName" . }}
      key: admin-token
      {{- end }}
{{- end }}
{{- /* The settings the shipped rules and dashboards were built with: the pods act on
the same thresholds the alerts show. */}}
{{- range $name, $value := (include "watchkeeper.builtSettings" . | fromYaml).values }}
- name: WATCHKEEPER_{{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- range $name, $value := .Values.settings }}
- name: WATCHKEEPER_{{ $name | upper }}
  value: {{ include "watchkeeper.settingValue" $value | quote }}
{{- end }}
{{- end }}

{{/*
A `settings:` value as its variable's text. Helm reads every number of the values as a
float64, which toString writes in Go's float notation from a million up ("1e+06"), and
the integer settings refuse that: a whole number is written as its digits.
*/}}
{{- define "watchkeeper.settingValue" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) (lt . 1e15) (gt . -1e15) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* Volumes every Watchkeeper pod mounts: scratch data, /tmp and the model store. */}}
{{- define "watchkeeper.volumes" -}}
- name: data
  emptyDir: {}
- name: tmp
  emptyDir: {}
- name: models
  persistentVolumeClaim:
    claimName: {{ include "watchkeeper.modelStoreClaim" . }}
{{- end }}

{{/* Mounts of those volumes. */}}
{{- define "watchkeeper.volumeMounts" -}}
- name: data
  mountPath: /var/lib/watchkeeper
- name: tmp
  mountPath: /tmp
- name: models
  mountPath: /var/lib/watchkeeper/models
{{- end }}

{{/*
With the bundled PostgreSQL there is no database when pre-install hooks run, so each
pod brings the schema up to date itself before starting (upgrades serialise on a
PostgreSQL advisory lock, so replicas starting together are safe).
*/}}
{{- define "watchkeeper.migrateInitContainer" -}}
initContainers:
  - name: migrate
    image: {{ include "watchkeeper.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args: ["db", "upgrade", "--wait", {{ .Values.migrations.waitSeconds | quote }}]
    env:
      {{- include "watchkeeper.env" . | nindent 6 }}
    securityContext:
      {{- toYaml .Values.securityContext | nindent 6 }}
    resources:
      {{- toYaml .Values.migrations.resources | nindent 6 }}
    volumeMounts:
      {{- include "watchkeeper.volumeMounts" . | nindent 6 }}
{{- end }}

{{/* Whether pods migrate in an init container (bundled PostgreSQL) instead of the hook. */}}
{{- define "watchkeeper.migrationInitContainers" -}}
{{- if and .Values.migrations.enabled .Values.postgresql.enabled }}true{{ end }}
{{- end }}

{{/* Pod-level settings shared by every Watchkeeper pod. */}}
{{- define "watchkeeper.podSpec" -}}
serviceAccountName: {{ include "watchkeeper.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automount }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
