{{/*
Names. Every helper takes a chart context (., or .Subcharts.apiward from a parent chart), so the
sidecar templates render the same names inside another chart.
*/}}
{{- define "apiward.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "apiward.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "apiward.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "apiward.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: apiward
{{- end -}}

{{/* selector labels of one component: (dict "ctx" . "component" "collector") */}}
{{- define "apiward.selectorLabels" -}}
app.kubernetes.io/name: {{ include "apiward.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "apiward.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "apiward.tokenSecretName" -}}
{{- .Values.tokens.existingSecret | default (printf "%s-tokens" (include "apiward.fullname" .)) -}}
{{- end -}}

{{- define "apiward.collectorUrl" -}}
{{- if .Values.collector.enabled -}}
{{- printf "http://%s-collector.%s.svc:%d" (include "apiward.fullname" .) .Release.Namespace (int .Values.collector.service.port) -}}
{{- else -}}
{{- required "collector.externalUrl is required when collector.enabled=false" .Values.collector.externalUrl -}}
{{- end -}}
{{- end -}}

{{/* A checksum of the policy files: in pod annotations, so a policy change rolls the pods. */}}
{{- define "apiward.policiesChecksum" -}}
{{- toYaml .Values.policies.files | sha256sum -}}
{{- end -}}

{{/* Pods allowed to reach the collector carry this label (sensors, sidecar pods, the test pod). */}}
{{- define "apiward.clientLabel" -}}
apiward.io/client: "true"
{{- end -}}

{{/*
The sensor container. (dict "ctx" <chart context> "mode" "standalone|sidecar|mirror"
"upstream" URL "port" N "adminPort" N)
*/}}
{{- define "apiward.sensorContainer" -}}
{{- $ctx := .ctx -}}
{{- $s := $ctx.Values.sensor -}}
- name: apiward-sensor
  image: {{ include "apiward.image" $ctx | quote }}
  imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
  args:
    - --listen=0.0.0.0:{{ .port }}
    - --admin-listen=0.0.0.0:{{ .adminPort }}
    {{- if eq .mode "mirror" }}
    - --mode=mirror
    {{- else }}
    - --mode=inline
    - --upstream={{ .upstream }}
    {{- end }}
    - --collector={{ include "apiward.collectorUrl" $ctx }}
    - --window={{ $s.window }}
    - --inspect-bytes={{ int $s.inspectBytes }}
    - --log-level={{ $s.logLevel }}
    {{- with $s.apiName }}
    - --api-name={{ . }}
    {{- end }}
    {{- with $s.trustedProxies }}
    - --trusted-proxies={{ join "," . }}
    {{- end }}
    {{- with $s.internalCidrs }}
    - --internal-cidrs={{ join "," . }}
    {{- end }}
    {{- if $s.enforce }}
    - --enforce
    {{- end }}
    {{- if eq (toString $s.analysisProcess) "true" }}
    - --analysis-process
    {{- else if eq (toString $s.analysisProcess) "false" }}
    - --no-analysis-process
    {{- end }}
    {{- if $ctx.Values.policies.files }}
    - --policies=/etc/apiward/policies
    {{- end }}
    {{- range $s.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    - name: APIWARD_INGEST_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ include "apiward.tokenSecretName" $ctx }}
          key: {{ $ctx.Values.tokens.keys.ingest }}
    - name: APIWARD_PRINCIPAL_SECRET
      valueFrom:
        secretKeyRef:
          name: {{ include "apiward.tokenSecretName" $ctx }}
          key: {{ $ctx.Values.tokens.keys.principalSecret }}
    - name: APIWARD_SENSOR_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: APIWARD_STATE_DIR
      value: /var/lib/apiward/sensor
  ports:
    - name: {{ if eq .mode "mirror" }}mirror{{ else }}proxy{{ end }}
      containerPort: {{ .port }}
      protocol: TCP
    - name: sensor-admin
      containerPort: {{ .adminPort }}
      protocol: TCP
  readinessProbe:
    httpGet: {path: /readyz, port: {{ .adminPort }}}
    periodSeconds: 5
  livenessProbe:
    httpGet: {path: /healthz, port: {{ .adminPort }}}
    initialDelaySeconds: 10
    periodSeconds: 10
  resources:
    {{- toYaml $s.resources | nindent 4 }}
  securityContext:
    {{- toYaml $ctx.Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: apiward-sensor-state
      mountPath: /var/lib/apiward
    - name: apiward-sensor-tmp
      mountPath: /tmp
    {{- if $ctx.Values.policies.files }}
    - name: apiward-policies
      mountPath: /etc/apiward/policies
      readOnly: true
    {{- end }}
{{- end -}}

{{/* The sensor's volumes (state, tmp, policies), for the pod's "volumes:" list. (dict "ctx" <chart context>) */}}
{{- define "apiward.sensorSidecarVolumes" -}}
{{- $ctx := .ctx -}}
- name: apiward-sensor-state
  emptyDir:
    sizeLimit: {{ $ctx.Values.sensor.stateSizeLimit }}
- name: apiward-sensor-tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- if $ctx.Values.policies.files }}
- name: apiward-policies
  configMap:
    name: {{ include "apiward.fullname" $ctx }}-policies
{{- end }}
{{- end -}}

{{/*
The sensor as a sidecar, for the "containers:" list of an application's pod:
  {{- include "apiward.sensorSidecar" (dict "ctx" .Subcharts.apiward "appPort" 8080) | nindent 8 }}
It forwards 0.0.0.0:sensor.sidecar.port to the application at 127.0.0.1:appPort; point the
application's Service targetPort at "proxy" (sensor.sidecar.port).
*/}}
{{- define "apiward.sensorSidecar" -}}
{{- $ctx := .ctx -}}
{{- $side := $ctx.Values.sensor.sidecar -}}
{{- if eq (int .appPort) (int $side.port) -}}
{{- fail (printf "the application port %d is the sensor's sidecar port: change sensor.sidecar.port" (int .appPort)) -}}
{{- end -}}
{{- include "apiward.sensorContainer" (dict "ctx" $ctx "mode" "sidecar" "upstream" (printf "http://127.0.0.1:%d" (int .appPort)) "port" (int $side.port) "adminPort" (int $side.adminPort)) -}}
{{- end -}}
