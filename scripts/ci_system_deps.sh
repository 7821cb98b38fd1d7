#!/usr/bin/env bash
# System packages the test suite needs beyond pip: Debian's chromium for the report's headless
# browser test (Playwright's own browser download cannot run here). Idempotent; run as root.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
