#!/usr/bin/env bash
# System packages some tests need (headless Chromium for the review page's browser test).
set -uo pipefail
if command -v apt-get >/dev/null 2>&1 && ! command -v chromium >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
    >/dev/null 2>&1 || echo "warning: could not install chromium; browser tests will skip" >&2
fi
exit 0
