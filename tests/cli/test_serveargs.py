"""``cli/serveargs.py``: the usual ``easycluster -S`` lines read without argparse give
what argparse gives; every other line is left to argparse."""

from __future__ import annotations

import pytest

from easycluster.cli.serve import build_parser
from easycluster.cli.serveargs import DEFAULTS, quick_args


def test_the_defaults_are_the_parsers():
    assert vars(build_parser().parse_args([])) == DEFAULTS


@pytest.mark.parametrize(
    "line",
    [
        "-S",
        "--serve",
        "-S -p 0",
        "-S -p 7000 -b 127.0.0.1 -k /etc/easycluster/key",
        "-S -p7000 -b127.0.0.1 -k/tmp/key",
        "--serve --port=7000 --bind=::1 --keyfile=/tmp/k",
        "-S --port 7000 --bind * --keyfile key",
        "-S -v",
        "-S -vv",
        "-S -v -v --verbose",
        "-S -vvv -N -d",
        "-S --no-ipv6 --daemonize",
        "-S -a 10.0.0.0/8 -a 192.168.1.1 --allow=::1",
        "-S --config /etc/easycluster/server.conf",
        "-S -P /run/ec.pid -L /var/log/ec.log",
        "-S --pidfile=/run/ec.pid --logfile=/tmp/log",
        "-p 1 -S -p 2",  # (the last wins)
        "-S -p +5",
        "-S -b host.example -b 0.0.0.0",
        "-S -k key -S",
    ],
)
def test_a_usual_line_gives_what_argparse_gives(line):
    argv = line.split()
    quick = quick_args(argv)
    assert quick is not None
    assert vars(quick) == vars(build_parser().parse_args(argv))


@pytest.mark.parametrize(
    "line",
    [
        "",  # (nothing to do: argparse's usage line)
        "-p 7000",  # (no -S)
        "-g /tmp/k",
        "-S -h",
        "--version",
        "-S --install",
        "-S -K c2VjcmV0",
        "-S --grace 5",
        "-S --max-connections 9",
        "-S -p",  # (a value missing)
        "-S -p x",  # (not a number)
        "-S -p -1",
        "-S -b -x",
        "-S -b=host",
        "-S --bind=",
        "-S --po 7000",  # (an abbreviation)
        "-Sv",
        "-S extra",
        "-S -- -p 1",
        "-S --verbose=2",
        "-S v-",  # (a stray word that is no option)
        "-S -",
        "-S -c myserver.Server",
    ],
)
def test_any_other_line_is_left_to_argparse(line):
    assert quick_args(line.split()) is None


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("-S -p x", "argument -p/--port: invalid int value: 'x'"),  # (argparse's, with usage)
        ("-S -b", "argument -b/--bind: expected one argument"),
        ("-S -p 70000 -k nokey", "bad port 70000: expected 0-65535"),  # (the quick path's)
        ("-S -k /nonexistent/easycluster.key", "/nonexistent/easycluster.key"),
    ],
)
def test_a_bad_serving_line_exits_2_with_one_clear_message_and_serves_nothing(
    line, says, capsys, monkeypatch
):
    from easycluster.cli import serve

    def must_not_serve(*a, **k):
        raise AssertionError("the server started")

    monkeypatch.setattr(serve, "run_server", must_not_serve)
    assert serve.main(line.split()) == 2
    err = capsys.readouterr().err
    assert says in err
    assert err.count("easycluster: ") == 1  # (one message naming the command)
    if quick_args(line.split()) is None:
        assert err.startswith("usage: easycluster")
