{{/* The chart's name. */}}
{{- define "strait.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's resource name: <release>-strait, or the release name when it
already contains the chart's name. Also the pods' name prefix (their names
are the instance ids), so keep it short.
*/}}
{{- define "strait.fullname" -}}
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

{{- define "strait.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "strait.selectorLabels" -}}
app.kubernetes.io/name: {{ include "strait.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "strait.labels" -}}
helm.sh/chart: {{ include "strait.chart" . }}
{{ include "strait.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret mounted at /etc/strait/secrets, empty when there is none. */}}
{{- define "strait.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else if .Values.secretFiles }}
{{- printf "%s-secrets" (include "strait.fullname" .) }}
{{- end }}
{{- end }}

{{/* Refuses values that cannot work. */}}
{{- define "strait.validate" -}}
{{- if not (has .Values.kind (list "Deployment" "StatefulSet")) }}
{{- fail (printf "kind must be Deployment or StatefulSet, not %q" .Values.kind) }}
{{- end }}
{{- if and .Values.existingSecret .Values.secretFiles }}
{{- fail "set existingSecret or secretFiles, not both" }}
{{- end }}
{{- $listen := printf "(?m)^\\s*metrics_address\\s*=\\s*\"[^\"]*:%d\"" (int .Values.metricsPort) }}
{{- if not (regexMatch $listen .Values.config) }}
{{- fail (printf "config must set metrics_address = \"0.0.0.0:%d\" (metricsPort): the probes and the Service use it" (int .Values.metricsPort)) }}
{{- end }}
{{- if regexMatch "(?m)^\\s*instance_id\\s*=" .Values.config }}
{{- fail "config must not set instance_id: every pod runs the same config, and each pod's instance id is its name (STRAIT_INSTANCE_ID)" }}
{{- end }}
{{- end }}

{{/* The pod template of the Deployment and of the StatefulSet. */}}
{{- define "strait.podTemplate" -}}
metadata:
  labels:
    {{- include "strait.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A config or secret change rolls the pods (strait reads both at start only).
    checksum/config: {{ .Values.config | sha256sum }}
    {{- if and .Values.secretFiles (not .Values.existingSecret) }}
    checksum/secret: {{ toJson .Values.secretFiles | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  automountServiceAccountToken: false
  {{- with .Values.serviceAccountName }}
  serviceAccountName: {{ . }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  affinity:
    {{- if .Values.affinity }}
    {{- toYaml .Values.affinity | nindent 4 }}
    {{- else }}
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "strait.selectorLabels" . | nindent 16 }}
    {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: strait
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - run
        - --config
        - /etc/strait/strait.toml
        - --progress
        - {{ .Values.progressSeconds | quote }}
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        # The static member id in the replication group: the pod's name.
        - name: STRAIT_INSTANCE_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: STRAIT_LOG_FORMAT
          value: {{ .Values.logFormat | quote }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: metrics
          containerPort: {{ .Values.metricsPort }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: {{ .Values.metricsPort }}
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: {{ .Values.metricsPort }}
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        # A single file (subPath), so that /etc/strait/secrets is not nested
        # in the read-only ConfigMap volume.
        - name: config
          mountPath: /etc/strait/strait.toml
          subPath: strait.toml
          readOnly: true
        {{- if include "strait.secretName" . }}
        - name: secrets
          mountPath: /etc/strait/secrets
          readOnly: true
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "strait.fullname" . }}-config
    {{- with include "strait.secretName" . }}
    - name: secrets
      secret:
        secretName: {{ . }}
        defaultMode: 0440
    {{- end }}
{{- end }}
