#!/bin/sh
# The `ray-head` service of docker-compose.yml: a Ray head node, then docent's Serve
# application deployed on it from the Serve config shipped in the package
# (services/gateway/serve.yaml), or from $SERVE_CONFIG.
#
# Ray runs as a real head (dashboard on :8265, GCS on :6379, Ray client on :10001), so
# workers can join it and jobs can be submitted to it; `docent serve` finds it as the
# running local cluster, deploys the application with the gateway listening on every
# interface (the Serve config says 127.0.0.1), waits until every deployment runs, and
# shuts Serve down on SIGTERM. Ray Serve reads RAY_SERVE_* variables when Ray starts,
# so they are set in the service's environment, not by `docent serve`.
set -eu

ray start --head \
  --port=6379 \
  --dashboard-host=0.0.0.0 \
  --dashboard-port=8265 \
  --ray-client-server-port=10001 \
  --disable-usage-stats \
  ${RAY_HEAD_NUM_CPUS:+--num-cpus="$RAY_HEAD_NUM_CPUS"} \
  ${RAY_HEAD_NUM_GPUS:+--num-gpus="$RAY_HEAD_NUM_GPUS"}

# Join the head just started (never start a second, private Ray if it cannot be found).
export RAY_ADDRESS=auto
exec docent serve ${SERVE_CONFIG:+--serve-config "$SERVE_CONFIG"} --host 0.0.0.0 "$@"
