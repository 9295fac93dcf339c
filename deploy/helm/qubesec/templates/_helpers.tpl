{{/* The workload's name label; the same as the kustomize manifests use. */}}
{{- define "qubesec.name" -}}
qubesec-operator
{{- end }}

{{/*
Full name of the release's objects: fullnameOverride, else the release name
when it already contains "qubesec", else "<release>-qubesec". At most 52
characters, so "<fullname>-leader-election" stays a valid name.
*/}}
{{- define "qubesec.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "qubesec.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "qubesec.selectorLabels" -}}
app.kubernetes.io/name: {{ include "qubesec.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "qubesec.labels" -}}
{{ include "qubesec.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: qubesec
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "qubesec.chart" . }}
{{- end }}

{{- define "qubesec.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "qubesec.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Combinations the schema cannot express; each fails with the fix. */}}
{{- define "qubesec.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicaCount is %d but leaderElection.enabled is false: replicas would reconcile concurrently; enable leader election or set replicaCount: 1" (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.allowCrossNamespaceRefs .Values.watchNamespace }}
{{- fail "allowCrossNamespaceRefs needs cluster-wide mode: with watchNamespace set the operator cannot read other namespaces" }}
{{- end }}
{{- end }}

{{/*
The operator's permissions, granted by a ClusterRole (cluster-wide) or a Role in
watchNamespace. The same rules as the kustomize components' rbac.yaml files, which
tests/deploy.rs checks.
*/}}
{{- define "qubesec.operatorRules" -}}
# Custom resources: list + watch feed the shared caches (one watch per kind).
# Nothing reads them with get: reconciles work from the caches.
- apiGroups: ["qubesec.io"]
  resources:
    - quantumkemkeypairs
    - quantumsignaturekeypairs
    - quantumrandomnumbers
    - quantumencapsulatesecrets
    - quantumdecapsulatesecrets
    - quantumderivedkeys
    - quantumsignmessages
    - quantumverifysignatures
    - quantumcertificates
  verbs: ["list", "watch"]
# Status: server-side apply (patch) with the object's resourceVersion as precondition.
- apiGroups: ["qubesec.io"]
  resources:
    - quantumkemkeypairs/status
    - quantumsignaturekeypairs/status
    - quantumrandomnumbers/status
    - quantumencapsulatesecrets/status
    - quantumdecapsulatesecrets/status
    - quantumderivedkeys/status
    - quantumsignmessages/status
    - quantumverifysignatures/status
    - quantumcertificates/status
  verbs: ["patch"]
# Secrets and ConfigMaps (RBAC cannot narrow by label; the operator does):
# - list, watch: only with label selectors: its outputs (managed-by: qubesec,
#   with data) and opted-in inputs (qubesec.io/input: "true", metadata only);
# - get: an opted-in input when a reconcile needs it, and metadata only, to tell
#   "absent" from "exists but not opted in" or "name taken by someone else";
# - create: a new output (fails if the name is taken: never takes an object over);
# - update: a later write to its own output, at the resourceVersion at which it
#   was seen to be ours (fails if anyone replaced it since).
# No patch and no delete: outputs go away by garbage collection.
- apiGroups: [""]
  resources: ["secrets", "configmaps"]
  verbs: ["get", "list", "watch", "create", "update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
