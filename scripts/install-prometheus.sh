#!/usr/bin/env bash
# Debian's Prometheus, for the test that asks a real Prometheus every query of the Grafana dashboard
# (tests/test_prometheus.py). Installed when absent and this user can (root with apt-get, as in CI);
# a failed install fails. Elsewhere the test skips and says why. This script starts nothing (where
# systemd runs, Debian's package starts its own prometheus.service; the test starts its own).
set -euo pipefail
if command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Prometheus not installed and apt-get not usable here: the dashboard's Prometheus test will skip"
  exit 0
fi
echo "installing Debian's prometheus (the dashboard's queries are checked against it)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v prometheus >/dev/null
echo "prometheus installed: $(prometheus --version 2>&1 | head -1)"
