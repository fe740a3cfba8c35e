"""The one error -> exit-code path every subcommand shares (``cli.exitcodes``)."""

from __future__ import annotations

import argparse
import warnings

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
