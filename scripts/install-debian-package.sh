#!/usr/bin/env bash
# One Debian package a test needs, its command named as the package: installed when absent and this
# user can (root with apt-get, as in CI); a failed install fails. Elsewhere that test skips and says
# why. Usage: install-debian-package.sh PACKAGE "the test that needs it"
set -euo pipefail
package=$1
needed_by=$2
if command -v "$package" >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "$package not installed and apt-get not usable here: $needed_by will skip"
  exit 0
fi
echo "installing Debian's $package (for $needed_by)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$package" >/dev/null
command -v "$package" >/dev/null  # installed, and on PATH
echo "$package installed: $("$package" --version 2>&1 | head -1)"
