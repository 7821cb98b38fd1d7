#!/usr/bin/env bash
# The test suite: install portanet with every extra and the dev group (test tools, ruff, mypy,
# mkdocs) into .venv, then run pytest. Extra arguments go to pytest: -m "not slow" is the fast
# subset for development; CI (.ci/run) runs everything.
source "$(dirname "$0")/_venv.sh" all dev
exec .venv/bin/python -m pytest "$@"
