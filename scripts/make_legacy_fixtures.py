"""Regenerate the small legacy-Keras stand-ins in tests/fixtures/legacy/ (see
tests/legacy_fixtures.py for what each imitates).
Run: .venv/bin/python scripts/make_legacy_fixtures.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.legacy_fixtures import FIXTURES, build  # noqa: E402

if __name__ == "__main__":
    for path in build(FIXTURES).values():
        print(
            f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
            f" ({path.stat().st_size:,} bytes)"
        )
