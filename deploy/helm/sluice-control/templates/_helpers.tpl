{{/* Common names, labels and the image. */}}
{{- define "sluice-control.labels" -}}
app.kubernetes.io/part-of: sluice
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end }}

{{- define "sluice-control.selector" -}}
app.kubernetes.io/name: sluice-control
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sluice-control.image" -}}
{{- printf "%s/%s:%s" .Values.image.registry .Values.image.name (default .Chart.AppVersion .Values.image.tag) -}}
{{- end }}

{{- define "sluice-control.claim" -}}
{{- default "sluice-control-state" .Values.state.existingClaim -}}
{{- end }}
