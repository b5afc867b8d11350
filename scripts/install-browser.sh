#!/usr/bin/env bash
# Debian's Chromium, for the test that opens the HTML report in a real headless browser.
set -euo pipefail
if command -v chromium-browser >/dev/null 2>&1; then  # another distribution's name for it
  exit 0
fi
exec bash "$(dirname "$0")/install-debian-package.sh" chromium "the HTML report's browser test"
