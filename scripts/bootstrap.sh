#!/usr/bin/env bash
# Install what the service and its tests need on a fresh Debian machine: redis-server,
# prometheus (with promtool) and h2load (Debian packages) and a virtualenv in .venv with the project and its
# dev tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# The tests run a real Prometheus against a running gatekeeper, and promtool checks and unit-tests
# deploy/prometheus/ rules.
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || need_apt+=(prometheus)
# The benchmark (loadtest/bench.py, whose smoke run is a test) drives the server with h2load.
command -v h2load >/dev/null 2>&1 || need_apt+=(nghttp2-client)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "bootstrap: installing ${need_apt[*]} with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The Debian packages may start a system redis on 6379 and a system prometheus on 9090; we never
# use either (tests and the embedded default start their own on free loopback ports), so leave them alone.

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
touch .venv/.installed
echo "bootstrap: ready (.venv, redis $(redis-server --version | cut -d' ' -f3), prometheus $(prometheus --version 2>&1 | head -1 | cut -d' ' -f3))" >&2
