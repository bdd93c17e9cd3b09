{{/* Names, labels and the two containers, shared by both deployment shapes. */}}

{{- define "limen.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "limen.fullname" -}}
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

{{/* FULLNAME-SUFFIX within 63 characters: (list . "suffix") */}}
{{- define "limen.suffixed" -}}
{{- $ctx := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- $base := include "limen.fullname" $ctx | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" -}}
{{- printf "%s-%s" $base $suffix -}}
{{- end -}}

{{- define "limen.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "limen.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: limen
{{- end -}}

{{- define "limen.selectorLabels" -}}
app.kubernetes.io/name: {{ include "limen.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one component: (list . "proxy"|"controller") */}}
{{- define "limen.componentSelector" -}}
{{ include "limen.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "limen.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "limen.suffixed" (list . "controller")) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* split shape: the data-plane pods' own account, with no RBAC and no token mounted */}}
{{- define "limen.dataplaneServiceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- include "limen.suffixed" (list . "dataplane") -}}
{{- else -}}
{{- include "limen.serviceAccountName" . -}}
{{- end -}}
{{- end -}}

{{- define "limen.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "limen.electionId" -}}
{{- default (include "limen.suffixed" (list . "controller-leader")) .Values.controller.election.id -}}
{{- end -}}

{{- define "limen.adminTokenSecret" -}}
{{- default (include "limen.suffixed" (list . "admin-token")) .Values.dataplane.adminToken.existingSecret -}}
{{- end -}}

{{/* The watched namespaces, sorted and without duplicates (a list; empty = all). */}}
{{- define "limen.watchNamespaces" -}}
{{- toJson (.Values.watchNamespaces | uniq | sortAlpha) -}}
{{- end -}}

{{/* "true" when the controller can see the proxy Service (it reads it from its Service informer). */}}
{{- define "limen.publishService" -}}
{{- $ns := include "limen.watchNamespaces" . | fromJsonArray -}}
{{- if and .Values.controller.publishService (or (not $ns) (has .Release.Namespace $ns)) -}}true{{- end -}}
{{- end -}}

{{- define "limen.isDaemonSet" -}}
{{- if and (eq .Values.deployment.shape "split") (eq .Values.dataplane.kind "DaemonSet") -}}true{{- end -}}
{{- end -}}

{{/* Checks that span several values (the schema checks each one). */}}
{{- define "limen.validate" -}}
{{- if and .Values.autoscaling.enabled (include "limen.isDaemonSet" .) -}}
{{- fail "autoscaling.enabled: a HorizontalPodAutoscaler cannot scale a DaemonSet (dataplane.kind: DaemonSet)" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) -}}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (not .Values.autoscaling.targetCPUUtilizationPercentage) (not .Values.autoscaling.targetMemoryUtilizationPercentage) -}}
{{- fail "autoscaling.enabled needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" -}}
{{- end -}}
{{- if ge (int .Values.dataplane.drainTimeoutMs) (mul 1000 (sub (int .Values.terminationGracePeriodSeconds) (int .Values.dataplane.preStopSleepSeconds))) -}}
{{- fail "dataplane.drainTimeoutMs (plus preStopSleepSeconds) must end before terminationGracePeriodSeconds" -}}
{{- end -}}
{{- if and (not .Values.service.http.enabled) (not .Values.service.https.enabled) -}}
{{- fail "service: enable http, https or both" -}}
{{- end -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if and $pdb.enabled (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "invalid" $pdb.maxUnavailable)) -}}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other to null)" -}}
{{- end -}}
{{- if and $pdb.enabled (include "limen.isDaemonSet" .) (or (kindIs "invalid" $pdb.minAvailable) (kindIs "string" $pdb.minAvailable)) -}}
{{- fail "podDisruptionBudget with dataplane.kind DaemonSet: only an integer minAvailable works (maxUnavailable null)" -}}
{{- end -}}
{{- $d := .Values.dataplane -}}
{{- $ports := list (int $d.httpPort) (int $d.httpsPort) (int $d.statusPort) (int $d.adminPort) -}}
{{- if eq .Values.deployment.shape "sidecar" -}}
{{- $ports = append $ports (int .Values.controller.port) -}}
{{- end -}}
{{- if ne (len $ports) (len (uniq $ports)) -}}
{{- fail "dataplane.httpPort, httpsPort, statusPort, adminPort (and controller.port in the sidecar shape) must differ" -}}
{{- end -}}
{{- end -}}

{{/* Pod-level settings shared by every pod: (list . "component") */}}
{{- define "limen.podSpecCommon" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 -}}
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
securityContext:
  {{- toYaml $.Values.podSecurityContext | nindent 2 }}
{{- with $.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $ds := and (eq $component "proxy") (include "limen.isDaemonSet" $) }}
{{- if $.Values.affinity }}
affinity:
  {{- toYaml $.Values.affinity | nindent 2 }}
{{- else if and (ne $.Values.podAntiAffinity "none") (not $ds) }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "limen.componentSelector" (list $ $component) | fromYaml)) }}
affinity:
  podAntiAffinity:
    {{- if eq $.Values.podAntiAffinity "hard" }}
    requiredDuringSchedulingIgnoredDuringExecution:
      {{- toYaml (list $term) | nindent 6 }}
    {{- else }}
    preferredDuringSchedulingIgnoredDuringExecution:
      {{- toYaml (list (dict "weight" 100 "podAffinityTerm" $term)) | nindent 6 }}
    {{- end }}
{{- end }}
{{- if and $.Values.topologySpread.enabled (not $ds) }}
topologySpreadConstraints:
  - maxSkew: {{ $.Values.topologySpread.maxSkew }}
    topologyKey: {{ $.Values.topologySpread.topologyKey | quote }}
    whenUnsatisfiable: {{ $.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "limen.componentSelector" (list $ $component) | nindent 8 }}
{{- end }}
{{- end -}}

{{- define "limen.podMeta" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 -}}
labels:
  {{- include "limen.labels" $ | nindent 2 }}
  app.kubernetes.io/component: {{ $component }}
  {{- with $.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $.Values.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The controller container: (list . "sidecar"|"split") */}}
{{- define "limen.controllerContainer" -}}
{{- $ := index . 0 -}}
{{- $shape := index . 1 -}}
{{- $c := $.Values.controller -}}
{{- $args := list "--election-namespace" $.Release.Namespace "--election-id" (include "limen.electionId" $)
      "--election" (toString $c.election.enabled) "--lease-seconds" (int $c.election.leaseSeconds | toString)
      "--ingress-class" $.Values.ingressClass.name "--controller-name" $.Values.ingressClass.controllerName
      "--listen" (printf ":%d" (int $c.port)) "--debounce" (int $c.debounceMs | toString) "--log-level" $c.logLevel
      "--update-status" (toString $c.updateStatus) -}}
{{- range include "limen.watchNamespaces" $ | fromJsonArray }}
{{- $args = concat $args (list "--watch-namespace" .) }}
{{- end }}
{{- if eq $shape "sidecar" }}
{{- $args = concat $args (list "--dataplane" "unix:/var/run/limen/admin.sock") }}
{{- else }}
{{- $args = concat $args (list "--dataplane-service" (printf "%s/%s" $.Release.Namespace (include "limen.suffixed" (list $ "admin"))) "--dataplane-port" "admin") }}
{{- end }}
{{- range $c.publishStatusAddresses }}
{{- $args = concat $args (list "--publish-status-address" .) }}
{{- end }}
{{- if include "limen.publishService" $ }}
{{- $args = concat $args (list "--publish-service" (printf "%s/%s" $.Release.Namespace (include "limen.fullname" $))) }}
{{- end }}
- name: controller
  image: {{ include "limen.image" $ | quote }}
  imagePullPolicy: {{ $.Values.image.pullPolicy }}
  command: ["/usr/local/bin/limen-controller"]
  args:
    {{- toYaml (concat $args $c.extraArgs) | nindent 4 }}
  {{- if or (eq $shape "split") $c.extraEnv }}
  env:
    {{- if eq $shape "split" }}
    - name: LIMEN_DATAPLANE_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ include "limen.adminTokenSecret" $ }}
          key: {{ $.Values.dataplane.adminToken.key | quote }}
    {{- end }}
    {{- with $c.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  ports:
    - name: ctl-http
      containerPort: {{ $c.port }}
      protocol: TCP
  livenessProbe:
    httpGet: {path: /healthz, port: ctl-http}
    {{- toYaml $c.livenessProbe | nindent 4 }}
  readinessProbe:
    httpGet: {path: /readyz, port: ctl-http}
    {{- toYaml $c.readinessProbe | nindent 4 }}
  resources:
    {{- toYaml $c.resources | nindent 4 }}
  securityContext:
    {{- toYaml $.Values.securityContext | nindent 4 }}
  volumeMounts:
    - {name: kube-api-access, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}
    - {name: tmp, mountPath: /tmp}
    {{- if eq $shape "sidecar" }}
    - {name: run, mountPath: /var/run/limen}
    {{- end }}
{{- end -}}

{{/* The data-plane container: (list . "sidecar"|"split") */}}
{{- define "limen.dataplaneContainer" -}}
{{- $ := index . 0 -}}
{{- $shape := index . 1 -}}
{{- $d := $.Values.dataplane -}}
{{- $args := list "--managed" "--state-dir" "/var/lib/limen" "--status-listen" (printf "0.0.0.0:%d" (int $d.statusPort))
      "--workers" (int $d.workers | toString) "--drain-timeout" (int $d.drainTimeoutMs | toString) "--log-level" $d.logLevel -}}
{{- if $.Values.service.http.enabled }}
{{- $args = concat $args (list "--proxy-listen" (printf "0.0.0.0:%d" (int $d.httpPort))) }}
{{- end }}
{{- if $.Values.service.https.enabled }}
{{- $args = concat $args (list "--proxy-listen" (printf "0.0.0.0:%d ssl http2" (int $d.httpsPort))) }}
{{- end }}
{{- if eq $shape "sidecar" }}
{{- $args = concat $args (list "--admin-listen" "unix:/var/run/limen/admin.sock") }}
{{- else }}
{{- $args = concat $args (list "--admin-listen" (printf "0.0.0.0:%d" (int $d.adminPort))) }}
{{- end }}
{{- if not $d.latencyHeaders }}
{{- $args = append $args "--no-latency-headers" }}
{{- end }}
{{- if $d.accessLog }}
{{- $args = concat $args (list "--access-log" "/dev/stdout") }}
{{- end }}
{{- with $d.trustedIPs }}
{{- $args = concat $args (list "--trusted-ips" (join "," .)) }}
{{- end }}
{{- with $d.realIPHeader }}
{{- $args = concat $args (list "--real-ip-header" .) }}
{{- end }}
- name: dataplane
  image: {{ include "limen.image" $ | quote }}
  imagePullPolicy: {{ $.Values.image.pullPolicy }}
  command: ["/usr/local/bin/limen-dataplane"]
  args:
    {{- toYaml (concat $args $d.extraArgs) | nindent 4 }}
  {{- if or (eq $shape "split") $d.extraEnv }}
  env:
    {{- if eq $shape "split" }}
    - name: LIMEN_ADMIN_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ include "limen.adminTokenSecret" $ }}
          key: {{ $d.adminToken.key | quote }}
    {{- end }}
    {{- with $d.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  ports:
    {{- if $.Values.service.http.enabled }}
    - {name: proxy-http, containerPort: {{ $d.httpPort }}, protocol: TCP}
    {{- end }}
    {{- if $.Values.service.https.enabled }}
    - {name: proxy-https, containerPort: {{ $d.httpsPort }}, protocol: TCP}
    {{- end }}
    - {name: dp-status, containerPort: {{ $d.statusPort }}, protocol: TCP}
    {{- if eq $shape "split" }}
    - {name: dp-admin, containerPort: {{ $d.adminPort }}, protocol: TCP}
    {{- end }}
  livenessProbe:
    httpGet: {path: /status, port: dp-status}
    {{- toYaml $d.livenessProbe | nindent 4 }}
  readinessProbe:
    httpGet: {path: /status, port: dp-status}
    {{- toYaml $d.readinessProbe | nindent 4 }}
  {{- if gt (int $d.preStopSleepSeconds) 0 }}
  lifecycle:
    preStop:
      exec:
        command: ["sleep", {{ int $d.preStopSleepSeconds | toString | quote }}]
  {{- end }}
  resources:
    {{- toYaml $d.resources | nindent 4 }}
  securityContext:
    {{- toYaml $.Values.securityContext | nindent 4 }}
  volumeMounts:
    - {name: state, mountPath: /var/lib/limen}
    - {name: tmp, mountPath: /tmp}
    {{- if eq $shape "sidecar" }}
    - {name: run, mountPath: /var/run/limen}
    {{- end }}
{{- end -}}

{{/* The service-account token, mounted only into the controller container (the pod does not
automount it, so the data plane, which faces clients, never holds it). */}}
{{- define "limen.kubeApiAccessVolume" -}}
- name: kube-api-access
  projected:
    defaultMode: 0444
    sources:
      - serviceAccountToken: {path: token, expirationSeconds: 3607}
      - configMap:
          name: kube-root-ca.crt
          items: [{key: ca.crt, path: ca.crt}]
      - downwardAPI:
          items:
            - path: namespace
              fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}
{{- end -}}
