#!/bin/sh
# The `ingest` job of docker-compose.yml: `docent ingest` of the mounted docs folder
# (/docs, or $INGEST_SOURCE: another folder or an s3://bucket/prefix in MinIO), with
# --base-url $DOCS_BASE_URL when it is set. Arguments are passed on to `docent ingest`:
#   docker compose --profile ingest run --rm ingest --prune --exclude '**/drafts/**'
# Ray runs locally inside this container unless RAY_ADDRESS names a cluster.
set -eu

source="${INGEST_SOURCE:-/docs}"
if [ -n "${DOCS_BASE_URL:-}" ]; then
  set -- --base-url "$DOCS_BASE_URL" "$@"
fi
exec docent ingest "$source" "$@"
