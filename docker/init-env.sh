#!/bin/sh
# Writes .env from .env.example with every empty required secret (*_PASSWORD,
# *_SECRET_KEY) set to a random hex string; the optional keys (OPENAI_API_KEY,
# SLACK_*) stay empty. Refuses to overwrite an existing .env.
#   docker/init-env.sh [TARGET]        (default: .env beside docker-compose.yml)
set -eu

root="$(cd "$(dirname "$0")/.." && pwd)"
example="$root/.env.example"
target="${1:-$root/.env}"

if [ -e "$target" ]; then
  echo "$target exists: not overwritten" >&2
  exit 1
fi

random_secret() {
  od -An -N24 -tx1 /dev/urandom | tr -d ' \n'
}

umask 077
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
    *_PASSWORD= | *_SECRET_KEY=) printf '%s%s\n' "$line" "$(random_secret)" ;;
    *) printf '%s\n' "$line" ;;
  esac
done <"$example" >"$target"
echo "wrote $target (secrets generated; keep it out of version control)"
