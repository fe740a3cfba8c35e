"""The one error -> exit-code path every subcommand shares (``cli.exitcodes``)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import warnings

import pytest

from easycluster import keys
from easycluster.cli.exitcodes import run_command


def test_a_warning_is_one_line_naming_the_command(capsys):
    def body() -> int:
        keys.decode_key("sekrit")  # a short passphrase: WeakKeyWarning
        return 0

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert run_command("easycluster", argparse.ArgumentParser(), body) == 0
    err = capsys.readouterr().err
    assert err.startswith("easycluster: warning: a passphrase of 6 characters")
    assert err.count("\n") == 1 and "keys.py" not in err


# A real SIGINT, sent by the process to itself as it imports the module named in argv[1]
# (a finder first in sys.meta_path): a Ctrl-C during the imports without timing luck.
INTERRUPTED_IMPORT = """
import os, runpy, signal, sys

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == MODULE:
            os.kill(os.getpid(), signal.SIGINT)
        return None

MODULE = sys.argv[1]
sys.meta_path.insert(0, CtrlC())
sys.argv = ["easycluster", *sys.argv[2:]]
runpy.run_module("easycluster", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(
    "module, argv",
    [
        # (shell --help no longer imports the node sets: its parser is built alone)
        ("easycluster.cli.shellparser", ["shell", "--help"]),
        ("easycluster.nodeset.rangeset", ["shell", "-R", "exec", "-w", "n1", "true"]),
        ("easycluster.cli.nodeset", ["nodeset", "-c", "n[1-2]"]),
        ("easycluster.cli.serve", ["--help"]),
    ],
)
def test_ctrl_c_during_the_imports_exits_130_without_a_traceback(module, argv):
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_IMPORT, module, *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr, done.stdout) == (130, "", "")
