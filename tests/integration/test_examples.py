"""Every script in examples/ runs and exits 0 (they are what the README shows)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest
from helpers import ROOT

EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.py")))


@pytest.mark.parametrize("script", EXAMPLES, ids=os.path.basename)
def test_example_runs(script):
    proc = subprocess.run(
        [sys.executable, script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip(), "an example should print what it does"
