{{/* Names, labels and shared pod settings of the finex-workers chart. */}}

{{- define "finex-workers.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The object-name prefix, as bitnami's common.names.fullname and cert-manager's fullname do, plus
one rule: a release named for the product ("finex", a dash-separated prefix of the chart name
"finex-workers") is not repeated either. So `helm install finex` gives finex-operator and
finex-exporter, `helm install finex-workers` gives finex-workers-operator, and `helm install
prod` gives prod-finex-workers-operator. fullnameOverride replaces it whole.
*/}}
{{- define "finex-workers.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if or (contains $name .Release.Name) (hasPrefix (printf "%s-" .Release.Name) $name) }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "finex-workers.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "finex-workers.labels" -}}
helm.sh/chart: {{ include "finex-workers.chart" . }}
{{ include "finex-workers.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: finex-workers
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "finex-workers.selectorLabels" -}}
app.kubernetes.io/name: {{ include "finex-workers.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "operator"). */}}
{{- define "finex-workers.componentSelectorLabels" -}}
{{ include "finex-workers.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "finex-workers.componentLabels" -}}
{{ include "finex-workers.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "finex-workers.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The operator's ServiceAccount: <fullname>-operator when the chart creates it, or the
name given (or "default") when it does not. */}}
{{- define "finex-workers.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (printf "%s-operator" (include "finex-workers.fullname" .)) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The exporter's ServiceAccount, on the same rule. */}}
{{- define "finex-workers.exporter.serviceAccountName" -}}
{{- if .Values.exporter.serviceAccount.create }}
{{- default (printf "%s-exporter" (include "finex-workers.fullname" .)) .Values.exporter.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.exporter.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Cluster-scoped objects are shared by every namespace: their names carry the release's. */}}
{{- define "finex-workers.operator.clusterRoleName" -}}
{{- printf "%s-%s-operator" .Release.Namespace (include "finex-workers.fullname" .) }}
{{- end }}

{{/*
The namespaces the operator serves, as a JSON list; empty means every namespace. By default
only the release's own; operator.watchNamespaces lists others; operator.clusterWide (an explicit
opt-in, with a ClusterRole) serves them all.
*/}}
{{- define "finex-workers.operator.watchNamespaces" -}}
{{- if .Values.operator.clusterWide }}
{{- if .Values.operator.watchNamespaces }}
{{- fail "operator.clusterWide serves every namespace: leave operator.watchNamespaces empty, or set clusterWide false to serve only the listed ones" }}
{{- end }}
{{- toJson (list) }}
{{- else if .Values.operator.watchNamespaces }}
{{- toJson .Values.operator.watchNamespaces }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{/* Namespaces whose worker pods the NetworkPolicy covers: the release's and the watched. */}}
{{- define "finex-workers.workerNamespaces" -}}
{{- $namespaces := list .Release.Namespace }}
{{- range include "finex-workers.operator.watchNamespaces" . | fromJsonArray }}
{{- $namespaces = append $namespaces . }}
{{- end }}
{{- toJson (uniq $namespaces) }}
{{- end }}
