#!/bin/sh
# Run by the CronJob docent-reindex: re-run the incremental ingest (the data flywheel).
# Creates a RayJob with the spec of the applied RayJob "$TEMPLATE" (docent-ingest, so the
# image, entrypoint and resources of the overlay apply), waits until it has finished, exits
# non-zero when it failed, and keeps the newest "$KEEP" runs.
set -eu
: "${TEMPLATE:=docent-ingest}" "${KEEP:=3}" "${POLL_SECONDS:=30}"

spec=$(kubectl get rayjob "$TEMPLATE" -o jsonpath='{.spec}')
[ -n "$spec" ] || { echo "RayJob $TEMPLATE not found: apply the overlay first" >&2; exit 1; }
manifest=$(printf '{"apiVersion":"ray.io/v1","kind":"RayJob","metadata":{"generateName":"%s-run-","labels":{"app.kubernetes.io/name":"docent","app.kubernetes.io/component":"reindex","docent.dev/template":"%s"}},"spec":%s}' \
  "$TEMPLATE" "$TEMPLATE" "$spec")
name=$(printf '%s' "$manifest" | kubectl create -f - -o name)
echo "created $name"

while :; do
  deployment=$(kubectl get "$name" -o jsonpath='{.status.jobDeploymentStatus}')
  case "$deployment" in
    Complete)
      status=$(kubectl get "$name" -o jsonpath='{.status.jobStatus}')
      [ "$status" = SUCCEEDED ] || { echo "$name: the ingest ended $status" >&2; exit 1; }
      echo "$name: the ingest succeeded"
      break ;;
    Failed|ValidationFailed)
      echo "$name: $deployment: $(kubectl get "$name" -o jsonpath='{.status.message}')" >&2
      exit 1 ;;
  esac
  sleep "$POLL_SECONDS"
done

runs=$(kubectl get rayjobs -l "docent.dev/template=$TEMPLATE" --sort-by=.metadata.creationTimestamp -o name)
total=$(printf '%s\n' "$runs" | grep -c . || true)
if [ "$total" -gt "$KEEP" ]; then
  printf '%s\n' "$runs" | head -n "$((total - KEEP))" | while read -r old; do kubectl delete "$old"; done
fi
