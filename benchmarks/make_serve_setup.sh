#!/usr/bin/env bash
# Measure `make serve` on a fresh clone: seconds until the page answers, and the size of
# the environment it installed. Usage: benchmarks/make_serve_setup.sh [GIT-REF] [VENV-DIR]
# (VENV-DIR: .venv-serve now, .venv before the runtime lock). The uv cache is whatever
# this machine has: run it twice and take the second time for a warm-cache figure.
set -euo pipefail
ref=${1:-HEAD}
venv=${2:-.venv-serve}
repo=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
pid=
# make and the server it starts run in their own process group, stopped together.
trap '[ -n "$pid" ] && kill -INT -- "-$pid" 2>/dev/null; sleep 1; rm -rf "$work"' EXIT
git clone -q "$repo" "$work/clone"
git -C "$work/clone" checkout -q "$ref"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start=$(date +%s.%N)
setsid bash -c 'cd "$1" && exec make serve PORT="$2" STORAGE="$3"' _ \
  "$work/clone" "$port" "$work/data" >"$work/log" 2>&1 &
pid=$!
until curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; do
  kill -0 "$pid" 2>/dev/null || { cat "$work/log"; exit 1; }
  sleep 0.2
done
end=$(date +%s.%N)
size=$(du -sm "$work/clone/$venv" | cut -f1)
packages=$(find "$work/clone/$venv" -maxdepth 4 -name "*.dist-info" | wc -l)
printf 'ref=%s seconds_to_first_page=%.1f env_mb=%s packages=%s\n' \
  "$ref" "$(echo "$end - $start" | bc)" "$size" "$packages"
