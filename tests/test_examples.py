import subprocess
import sys

import pytest

from tests.helpers import REPO


@pytest.mark.slow  # trains and exports through TensorFlow
def test_quickstart_example_runs_end_to_end():
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "max abs error" in result.stdout and result.stdout.count("→ label") == 5
