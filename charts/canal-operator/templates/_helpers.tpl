{{/*
The chart name, or nameOverride.
*/}}
{{- define "canal-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The resource name prefix: fullnameOverride, else the release name when it
already contains the chart name, else "<release>-<chart>"; at most 55
characters, so that "<fullname>-metrics" is a valid Service name.
*/}}
{{- define "canal-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "canal-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "canal-operator.labels" -}}
helm.sh/chart: {{ include "canal-operator.chart" . }}
{{ include "canal-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: canal-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The Deployment's selector (immutable: never add to it).
*/}}
{{- define "canal-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "canal-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "canal-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "canal-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator's image: repository@digest, else repository:tag (tag default:
the chart's appVersion).
*/}}
{{- define "canal-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The canal-server image of CanalInstances without spec.image: serverImage,
else the operator's own image (it holds both binaries).
*/}}
{{- define "canal-operator.serverImage" -}}
{{- default (include "canal-operator.image" .) .Values.serverImage }}
{{- end }}

{{- define "canal-operator.leaseName" -}}
{{- default (include "canal-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
Rules across values that the schema does not express, with messages that
name the values to change.
*/}}
{{- define "canal-operator.validate" -}}
{{- if and (eq .Values.rbac.scope "namespaced") (not .Values.watchNamespace) }}
{{- fail "rbac.scope=namespaced needs watchNamespace: the namespace whose CanalInstances the operator watches, where its Role is bound (or use rbac.scope=cluster)" }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicas=%d needs leaderElection.enabled=true: without a Lease the replicas would reconcile side by side" (int .Values.replicas)) }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "serviceMonitor.enabled=true needs metrics.service.enabled=true: the ServiceMonitor selects the metrics Service" }}
{{- end }}
{{- end }}

{{/*
What the operator needs wherever it watches CanalInstances, as a ClusterRole
(rbac.scope=cluster) or a Role in watchNamespace (rbac.scope=namespaced).
tests/operator_rbac_lease.rs runs the operator with exactly these rights.
*/}}
{{- define "canal-operator.rules" -}}
# Every rule and verb is needed: tests/operator_rbac_rules.rs removes each
# in turn and shows what fails. Objects are listed, watched and applied,
# never read one by one, hence no get (except where noted).
- apiGroups: [canal.otter.dev]
  resources: [canalinstances]
  verbs: [list, watch, patch]
# get: the cursor-reset nonce is checked against the stored status.
- apiGroups: [canal.otter.dev]
  resources: [canalinstances/status]
  verbs: [get, patch]
# delete only for cleanupPolicy: Delete (the StatefulSet goes before the ZooKeeper nodes).
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [list, watch, create, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, watch, create, patch]
# The role label on the active pod.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, patch]
# A changed pod template is rolled by evicting one pod at a time, standbys
# first (the StatefulSet's updateStrategy is OnDelete).
- apiGroups: [""]
  resources: [pods/eviction]
  verbs: [create]
# Versions for the configuration hash; data only for zookeeper.auth.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/*
NetworkPolicy egress rule: (dict "rule" .Values.networkPolicy.egress.X "protocols" (list "TCP")).
*/}}
{{- define "canal-operator.egressRule" -}}
- ports:
  {{- range $port := .rule.ports }}
  {{- range $protocol := $.protocols }}
    - protocol: {{ $protocol }}
      port: {{ $port }}
  {{- end }}
  {{- end }}
  {{- with .rule.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
