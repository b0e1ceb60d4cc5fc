{{/* The release's resources are named after the release, cut to Kubernetes' 63 characters. */}}
{{- define "rollout-controller.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rollout-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rollout-controller.labels" -}}
{{ include "rollout-controller.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The Secret the controller's environment comes from: the one named, or the chart's. */}}
{{- define "rollout-controller.secretName" -}}
{{- if .Values.secret.create -}}
{{ include "rollout-controller.fullname" . }}
{{- else -}}
{{ required "secret.existingSecret: name the Secret holding RC_ENGINE__OPERATOR_KEYS, or set secret.create with secret.values" .Values.secret.existingSecret }}
{{- end -}}
{{- end -}}

{{- define "rollout-controller.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}
