{{/* deploy/<file> with the release namespace in place of kaito-system. */}}
{{- define "kaito.deployFile" -}}
{{- $ns := .root.Release.Namespace -}}
{{- .root.Files.Get (printf "files/%s" .file) | replace "namespace: kaito-system" (printf "namespace: %s" $ns) | replace "kaito-operator-webhook.kaito-system.svc" (printf "kaito-operator-webhook.%s.svc" $ns) -}}
{{- end -}}

{{- define "kaito.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
