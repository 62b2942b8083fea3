{{/* Names, labels and shared pod settings of the finex-workers chart. */}}

{{- define "finex-workers.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The object-name prefix: <release>-finex-workers, or the release name if it has the chart's. */}}
{{- define "finex-workers.fullname" -}}
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

{{- define "finex-workers.operator.serviceAccountName" -}}
{{- default (printf "%s-operator" (include "finex-workers.fullname" .)) .Values.operator.serviceAccount.name }}
{{- end }}

{{/* Cluster-scoped objects are shared by every namespace: their names carry the release's. */}}
{{- define "finex-workers.operator.clusterRoleName" -}}
{{- printf "%s-%s-operator" .Release.Namespace (include "finex-workers.fullname" .) }}
{{- end }}

{{/* Namespaces whose worker pods the NetworkPolicy covers: the release's and the watched. */}}
{{- define "finex-workers.workerNamespaces" -}}
{{- $namespaces := list .Release.Namespace }}
{{- range .Values.operator.watchNamespaces }}
{{- $namespaces = append $namespaces . }}
{{- end }}
{{- toJson (uniq $namespaces) }}
{{- end }}
