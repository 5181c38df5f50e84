#!/usr/bin/env bash
# The second half of `make demo`: serve the ingested index, ask one question through
# /query, one through /stream, a follow-up in the same conversation, one through the
# OpenAI-compatible API and one the docs don't cover, then stop the service.
set -euo pipefail
BIN=${BIN:-.venv/bin}
PORT=${DOCENT_DEMO_PORT:-8000}
URL="http://127.0.0.1:${PORT}"
LOG="${DOCENT_DATA_DIR:-.docent}/serve.log"
READY_WAIT_S=${DOCENT_DEMO_READY_WAIT_S:-300}
# The demo is one person on one machine: no API keys (everywhere else they are required).
export DOCENT_AUTH_ENABLED=${DOCENT_AUTH_ENABLED:-false}
mkdir -p "$(dirname "$LOG")"

"$BIN/docent" serve --port "$PORT" >"$LOG" 2>&1 &
server=$!
stop() { kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null || true; }
trap stop EXIT

echo "starting docent serve on $URL (log: $LOG)…"
for _ in $(seq "$READY_WAIT_S"); do
  if "$BIN/python" -c "import httpx, sys; sys.exit(httpx.get('$URL/readyz').status_code != 200)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "docent serve stopped:" >&2; cat "$LOG" >&2; exit 1
  fi
  sleep 1
done

echo; echo "── POST /query ──"
"$BIN/docent" query "How does docent keep re-ingesting cheap when nothing changed?" --url "$URL"
echo; echo "── POST /stream ──"
"$BIN/docent" query "Which endpoints does the gateway serve?" --url "$URL" --stream
echo; echo "── a conversation: the first question, then a follow-up that leans on it ──"
conversation=$("$BIN/docent" query "How do I embed the widget in a docs site?" --url "$URL" --json \
  | "$BIN/python" -c "import json, sys; print(json.load(sys.stdin)['conversation_id'])")
"$BIN/docent" query "and how do I allow its origin in the gateway?" --url "$URL" --conversation "$conversation"
echo; echo "── the OpenAI-compatible API, with the openai package ──"
"$BIN/python" - "$URL" <<'PY'
import sys

from openai import OpenAI

client = OpenAI(base_url=f"{sys.argv[1]}/v1", api_key="demo")  # no keys in the demo: any key is ignored
model = client.models.list().data[0].id
messages = [{"role": "user", "content": "How does docent keep re-ingesting cheap when nothing changed?"}]
for chunk in client.chat.completions.create(model=model, messages=messages, stream=True):
    print(chunk.choices[0].delta.content or "" if chunk.choices else "", end="", flush=True)
print()
PY
echo; echo "── a question the docs don't cover ──"
"$BIN/docent" query "Can you give me a good recipe for banana bread?" --url "$URL"
echo; echo "stopping docent serve…"
