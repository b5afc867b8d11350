#!/usr/bin/env bash
# Debian's Prometheus, for the test that asks a real Prometheus every query of the Grafana dashboard
# (tests/test_prometheus.py). This script starts nothing (where systemd runs, Debian's package starts
# its own prometheus.service; the test starts its own).
set -euo pipefail
exec bash "$(dirname "$0")/install-debian-package.sh" prometheus "the dashboard's Prometheus test"
