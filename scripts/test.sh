#!/usr/bin/env bash
# The test suite: install portanet with every extra into .venv, then run pytest.
source "$(dirname "$0")/_venv.sh" all
exec .venv/bin/python -m pytest "$@"
