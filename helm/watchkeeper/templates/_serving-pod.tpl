{{/*
The serving pod, the same whichever workload runs it: the StatefulSet (the journal on
the replica's claim, "journal" in its volumeClaimTemplates) or the Deployment (the
journal on an emptyDir). One template, so that probes, grace period and drain timeout
cannot differ between the two.
*/}}
{{- define "watchkeeper.servingPodTemplate" -}}
metadata:
  labels:
    {{- include "watchkeeper.componentSelectorLabels" (dict "context" . "component" "serving") | nindent 4 }}
spec:
  {{- include "watchkeeper.podSpec" . | nindent 2 }}
  terminationGracePeriodSeconds: {{ .Values.serving.terminationGracePeriodSeconds }}
  {{- if include "watchkeeper.migrationInitContainers" . }}
  {{- include "watchkeeper.migrateInitContainer" . | nindent 2 }}
  {{- end }}
  containers:
    - name: serving
      image: {{ include "watchkeeper.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["serve"]
      env:
        {{- include "watchkeeper.env" . | nindent 8 }}
        - name: WATCHKEEPER_PORT
          value: {{ .Values.serving.port | quote }}
        - name: WATCHKEEPER_WORKERS
          value: {{ .Values.serving.workers | quote }}
        - name: WATCHKEEPER_THREADS
          value: {{ .Values.serving.threads | quote }}
        - name: WATCHKEEPER_GRACEFUL_TIMEOUT
          value: {{ max 1 (sub (sub .Values.serving.terminationGracePeriodSeconds .Values.serving.preStopSeconds) 10) | quote }}
        - name: WATCHKEEPER_SPILL_DIR
          value: /var/lib/watchkeeper/spill
      ports:
        - name: http
          containerPort: {{ .Values.serving.port }}
          protocol: TCP
      # Starting: gunicorn up and the model loaded can take a while on a cold node.
      startupProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: 5
        failureThreshold: 36
      # Ready: a model is loaded and the schema is current. A database outage does
      # not fail it (log entries spill), so replicas stay in the Service.
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 3
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: 20
        timeoutSeconds: 5
        failureThreshold: 3
      {{- if .Values.serving.preStopSeconds }}
      # Endpoints and load balancers drop a terminating pod some time after it is
      # told to stop: keep serving that long before SIGTERM, so that the requests they
      # still send find a server that accepts them.
      lifecycle:
        preStop:
          exec:
            command: ["sleep", {{ .Values.serving.preStopSeconds | quote }}]
      {{- end }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.serving.resources | nindent 8 }}
      volumeMounts:
        {{- include "watchkeeper.volumeMounts" . | nindent 8 }}
        - name: journal
          mountPath: /var/lib/watchkeeper/spill
  volumes:
    {{- include "watchkeeper.volumes" . | nindent 4 }}
    {{- if not (include "watchkeeper.durableJournal" .) }}
    # The journal on the node's disk: it outlives a container restart, not the pod.
    - name: journal
      emptyDir:
        sizeLimit: {{ .Values.serving.journal.size }}
    {{- end }}
  {{- with .Values.serving.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.serving.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.serving.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.serving.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
