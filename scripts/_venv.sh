# Sourced by the scripts here: cd to the repository, create .venv if needed, and install
# portanet with the extras named in $1 (export, all) into it, plus the dependency groups named
# after it (dev, docs: PEP 735, needs pip >= 25.1, which the upgrade below brings). A second run
# with the same pyproject.toml, extras and groups installs nothing (the stamp records them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
STAMP=".venv/.portanet-installed"
EXTRAS="$1"
shift
GROUP_ARGS=()
for group in "$@"; do GROUP_ARGS+=(--group "$group"); done
WANT="$EXTRAS $* $(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[$EXTRAS]" "${GROUP_ARGS[@]}"
    echo "$WANT" > "$STAMP"
fi
