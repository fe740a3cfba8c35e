"""Every script in examples/ runs and exits 0 (they are what the README shows), and so
does the Python in the user docs listed in DOCS."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest
from helpers import ROOT

EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.py")))

# Docs whose ```python blocks are one script, run in order as a reader would type them.
DOCS = [os.path.join(ROOT, "docs", "proxies.md")]


@pytest.mark.parametrize("script", EXAMPLES, ids=os.path.basename)
def test_example_runs(script):
    proc = subprocess.run(
        [sys.executable, script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip(), "an example should print what it does"


def doc_script(markdown: str) -> str:
    """The ```python blocks of a Markdown text as one script, every other line blanked,
    so a line number in a traceback is the line number in the document."""
    out, inside = [], False
    for line in markdown.splitlines():
        if not inside and line.strip() == "```python":
            inside = True
            out.append("")
        elif inside and line.strip() == "```":
            inside = False
            out.append("")
        else:
            out.append(line if inside else "")
    assert not inside, "a ```python block is not closed"
    return "\n".join(out) + "\n"


def test_doc_script_keeps_line_numbers():
    text = "# t\n```python\nx = 1\n```\ntext\n```sh\nls\n```\n```python\nassert x\n```\n"
    lines = doc_script(text).splitlines()
    assert lines[2] == "x = 1" and lines[9] == "assert x"
    assert [line for line in lines if line] == ["x = 1", "assert x"]


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_doc_examples_run(doc, tmp_path):
    with open(doc) as f:
        script = doc_script(f.read())
    assert script.strip(), f"{doc} has no ```python block"
    path = tmp_path / os.path.basename(doc).replace(".md", "_md.py")
    path.write_text(script)
    env = dict(os.environ, TMPDIR=str(tmp_path))  # files the examples make land here
    proc = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
        env=env,
    )
    assert proc.returncode == 0, f"{os.path.relpath(doc, ROOT)} (same line numbers):\n{proc.stderr}"
