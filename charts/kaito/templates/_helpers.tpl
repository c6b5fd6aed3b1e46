{{/* deploy/<file> with the release namespace in place of kaito-system. */}}
{{- define "kaito.deployFile" -}}
{{- $ns := .root.Release.Namespace -}}
{{- .root.Files.Get (printf "files/%s" .file) | replace "namespace: kaito-system" (printf "namespace: %s" $ns) | replace "kaito-operator-webhook.kaito-system.svc" (printf "kaito-operator-webhook.%s.svc" $ns) -}}
{{- end -}}

{{- define "kaito.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{/* A container's env list with the values of the variables named in .settings replaced (the
others as they are), as YAML: include it and read it back with fromYamlArray. */}}
{{- define "kaito.envWith" -}}
{{- $env := list -}}
{{- range .env -}}
{{- if hasKey $.settings .name -}}
{{- $env = append $env (dict "name" .name "value" (get $.settings .name)) -}}
{{- else -}}
{{- $env = append $env . -}}
{{- end -}}
{{- end -}}
{{- toYaml $env -}}
{{- end -}}
