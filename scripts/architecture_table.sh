#!/usr/bin/env bash
# Measure the "Supported models" table (docs/supported-models.md): run the architecture tests
# (slow ones included) and print architecture → max abs error → seconds to export as Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
PORTANET_ARCH_LOG="$LOG" .venv/bin/python -m pytest -q -p no:cacheprovider \
    tests/export/test_architectures.py "$@" >&2
.venv/bin/python - "$LOG" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("| architecture | max abs error | seconds to export |")
print("|---|---:|---:|")
for row in rows:
    print(f"| {row['id']} | {row['max_abs']:.2g} | {row['seconds']:.1f} |")
PY
