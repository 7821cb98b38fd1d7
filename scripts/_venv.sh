# Sourced by the scripts here: cd to the repository, create .venv if needed, and install
# portanet with the extras named in $1 (export, all) into it. A second run with the same
# pyproject.toml and extras installs nothing (the stamp below records what was installed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
STAMP=".venv/.portanet-installed"
WANT="$1 $(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[$1]"
    echo "$WANT" > "$STAMP"
fi
