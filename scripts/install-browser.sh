#!/usr/bin/env bash
# Debian's Chromium, for the test that opens the HTML report in a real headless browser.
# Installed when absent and this user can (root with apt-get, as in CI); a failed install fails.
# Elsewhere the test skips and says why.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Chromium not installed and apt-get not usable here: the HTML browser test will skip"
  exit 0
fi
echo "installing Debian's chromium (headless browser for the HTML report test)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
echo "chromium installed: $(chromium --version 2>/dev/null || echo '?')"
