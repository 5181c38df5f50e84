#!/usr/bin/env bash
# Debian packages the tests drive for real: redis-server (limits, cache) and chromium
# (the widget test). Installed only when missing; apt's lists are refreshed only if the
# first try fails.
set -euo pipefail
packages=()
command -v redis-server >/dev/null || packages+=(redis-server)
command -v chromium >/dev/null || packages+=(chromium)
[ ${#packages[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v apt-get >/dev/null; then
  echo "missing ${packages[*]}: install them with your package manager" >&2
  exit 1
fi
echo "installing ${packages[*]} (Debian packages)…"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null \
  || { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; }
