{{/* Common names, labels and images. */}}
{{- define "sluice.labels" -}}
app.kubernetes.io/part-of: sluice
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end }}

{{- define "sluice.agent.selector" -}}
app.kubernetes.io/name: sluice-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sluice.operator.selector" -}}
app.kubernetes.io/name: sluice-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sluice.image" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- printf "%s/%s:%s" $root.Values.image.registry $name (default $root.Chart.AppVersion $root.Values.image.tag) -}}
{{- end }}

{{- define "sluice.scrapeAnnotations" -}}
{{- $port := index . 1 -}}
{{- if (index . 0).Values.prometheus.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ $port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{- define "sluice.relay.selector" -}}
app.kubernetes.io/name: sluice-relay
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
