"""The ``easycluster gather`` command: in-process through ``main(argv)`` with stdin and
stdout substituted, and as real subprocesses (ours, and ClusterShell's ``clubak`` as
the peer whose grouping we must agree with)."""

from __future__ import annotations

import io
import os
import pathlib
import random
import re
import shutil
import subprocess
import sys

import pytest

from easycluster.cli import SUBCOMMANDS
from easycluster.cli import main as cli_main
from easycluster.cli.gather import main
from easycluster.cluster.gather import HEADER_WIDTH

pytestmark = pytest.mark.timeout(60)

SAMPLE = b"n1: a\nn2: a\nn10: b\nn3: c\nn3: a\nn1: x\nn2: x\nn10: x\n"


def run(argv, data, capsysbinary, monkeypatch, entry=main):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    monkeypatch.setenv("NO_COLOR", "1")
    code = entry(argv)
    out, err = capsysbinary.readouterr()
    return code, out, err.decode()


def hdr(text):
    line = f"--- {text} "
    return (line + "-" * max(3, HEADER_WIDTH - len(line)) + "\n").encode()


CASES = [
    (["-b"], hdr("n[1-2] (2 nodes)") + b"a\nx\n" + hdr("n3") + b"c\na\n" + hdr("n10") + b"b\nx\n"),
    (
        [],
        hdr("n1")
        + b"a\nx\n"
        + hdr("n2")
        + b"a\nx\n"
        + hdr("n3")
        + b"c\na\n"
        + hdr("n10")
        + b"b\nx\n",
    ),
    (["-L"], b"n1: a\nn1: x\nn2: a\nn2: x\nn3: c\nn3: a\nn10: b\nn10: x\n"),
    (["-bL"], b"n[1-2]: a\nn[1-2]: x\nn3: c\nn3: a\nn10: b\nn10: x\n"),
    (["-b", "-N"], b"a\nx\nc\na\nb\nx\n"),
    (["-LN"], b"a\nx\na\nx\nc\na\nb\nx\n"),
    (["-c"], hdr("n[1-2] (2 nodes)") + b"a\nx\n" + hdr("n3") + b"c\na\n" + hdr("n10") + b"b\nx\n"),
    (
        ["--diff"],
        b"--- n[1-2] (2 nodes)\n+++ n3\n@@ -1,2 +1,2 @@\n+c\n a\n-x\n"
        b"--- n[1-2] (2 nodes)\n+++ n10\n@@ -1,2 +1,2 @@\n-a\n+b\n x\n",
    ),
]


@pytest.mark.parametrize("argv,expected", CASES)
def test_modes(argv, expected, capsysbinary, monkeypatch):
    assert run(argv, SAMPLE, capsysbinary, monkeypatch) == (0, expected, "")


def test_registered_as_a_subcommand(capsysbinary, monkeypatch):
    assert SUBCOMMANDS["gather"] == "easycluster.cli.gather"
    code, out, _ = run(["gather", "-bL"], b"n2: z\nn1: z\n", capsysbinary, monkeypatch, cli_main)
    assert (code, out) == (0, b"n[1-2]: z\n")


def test_separator_keys_and_spaces(capsysbinary, monkeypatch):
    data = b"  n1 :  two spaces\nn1:none\nn2\tx\ty\n"
    code, out, _ = run(["-L"], data[: data.index(b"n2")], capsysbinary, monkeypatch)
    assert (code, out) == (0, b"n1:  two spaces\nn1: none\n")
    code, out, _ = run(["-L", "-S", "\\t"], b"n2\tx\ty\n", capsysbinary, monkeypatch)
    assert (code, out) == (0, b"n2: x\ty\n")
    code, out, _ = run(["-L", "-S", "=>"], b"n1=> a=>b\n", capsysbinary, monkeypatch)
    assert (code, out) == (0, b"n1: a=>b\n")


def test_malformed_lines_are_reported_not_dropped(capsysbinary, monkeypatch):
    data = b"n1: a\nno separator here\nn2: a\n: empty key\n\nn3: b"
    code, out, err = run(["-b"], data, capsysbinary, monkeypatch)
    assert code == 1
    assert out == hdr("n[1-2] (2 nodes)") + b"a\n" + hdr("n3") + b"b\n"
    assert err.splitlines() == [
        "easycluster gather: line 2: no separator ':': 'no separator here'",
        "easycluster gather: line 4: no node name before ':': ': empty key'",
        "easycluster gather: line 5: no separator ':': ''",
    ]


def test_many_malformed_lines_are_counted(capsysbinary, monkeypatch):
    data = b"".join(b"junk %d\n" % i for i in range(25)) + b"n1: ok\n"
    code, out, err = run(["-L"], data, capsysbinary, monkeypatch)
    lines = err.splitlines()
    assert code == 1 and out == b"n1: ok\n"
    assert (
        len(lines) == 11 and lines[-1] == "easycluster gather: 15 more malformed line(s) left out"
    )
    code, out, err = run(["-L", "-q"], data, capsysbinary, monkeypatch)
    assert (code, err) == (1, "easycluster gather: 25 malformed line(s) left out\n")


def test_undecodable_bytes_pass_through(capsysbinary, monkeypatch):
    data = b"n\xff1: caf\xe9 \x00\xfe\nn2: caf\xe9 \x00\xfe\r\n"
    code, out, err = run(["-L"], data, capsysbinary, monkeypatch)
    assert (code, err) == (0, "")
    assert out == b"n2: caf\xe9 \x00\xfe\nn\xff1: caf\xe9 \x00\xfe\n"  # (CR LF ends a line)


def test_keys_in_nodeset_notation(capsysbinary, monkeypatch):
    data = b"n[1-2]: a\nn3: a\nn1: b\nn[2-3]: b\nfoo bar: a\n"
    code, out, _ = run(["-bL"], data, capsysbinary, monkeypatch)
    # every line kept in input order for each node the key stands for
    assert (code, out) == (0, b"foo bar: a\nn[1-3]: a\nn[1-3]: b\n")
    code, out, _ = run(["-bL", "--interpret-keys", "never"], data, capsysbinary, monkeypatch)
    # keys as plain text: listed as they are, in natural order, never folded
    assert (code, out) == (0, b"foo bar,n3,n[1-2]: a\nn1,n[2-3]: b\n")
    code, out, err = run(
        ["-b", "--interpret-keys", "always"], b"n[1-: a\n", capsysbinary, monkeypatch
    )
    assert code == 1 and out == b"" and "parse error" in err


def test_usage_errors_exit_2(capsysbinary, monkeypatch):
    for argv in (["--bogus"], ["-S", ""], ["--color", "sometimes"]):
        code, out, err = run(argv, b"n1: a\n", capsysbinary, monkeypatch)
        assert code == 2 and out == b"" and "easycluster gather: error:" in err


def test_empty_input_prints_nothing(capsysbinary, monkeypatch):
    for argv in ([], ["-b"], ["-L"], ["--diff"]):
        assert run(argv, b"", capsysbinary, monkeypatch) == (0, b"", "")


def test_colour_forced(capsysbinary, monkeypatch):
    code, out, _ = run(["-L", "--color", "always"], b"n1: a\n", capsysbinary, monkeypatch)
    assert out == b"\x1b[36mn1:\x1b[0m a\n"


def test_as_a_real_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "easycluster", "gather", "-b"],
        input=SAMPLE + b"broken\n",
        capture_output=True,
        timeout=30,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert proc.returncode == 1
    assert proc.stdout.startswith(hdr("n[1-2] (2 nodes)") + b"a\nx\n")
    assert proc.stderr == b"easycluster gather: line 9: no separator ':': 'broken'\n"


def test_import_stays_light():
    """``easycluster gather`` must not load the client stack (start-up time)."""
    code = (
        "import sys, easycluster.cli.gather\n"
        "print('\\n'.join(m for m in sys.modules if m.startswith('easycluster')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    loaded = set(proc.stdout.split())
    assert "easycluster.cli.gather" in loaded
    heavy = ("client", "transport", "remote", "launch", "protocol", "objects", "service")
    assert not {m for m in loaded if m.split(".")[1:2] and m.split(".")[1] in heavy}


def _clubak_blocks(text: str):
    """clubak -b output as {node set: lines} (it keeps the space after ':')."""
    blocks = {}
    parts = re.split(r"^-{15}\n(.*?)(?: \(\d+\))?\n-{15}\n", text, flags=re.M)
    for nodes, body in zip(parts[1::2], parts[2::2]):
        blocks[nodes] = [line[1:] for line in body.splitlines()]
    return blocks


def _our_blocks(text: str):
    blocks = {}
    parts = re.split(r"^--- (.*?)(?: \(\d+ nodes\))? -+\n", text, flags=re.M)
    for nodes, body in zip(parts[1::2], parts[2::2]):
        blocks[nodes] = body.splitlines()
    return blocks


@pytest.mark.skipif(
    not (pathlib.Path(sys.executable).parent / "clubak").exists() and not shutil.which("clubak"),
    reason="ClusterShell's clubak is not installed",
)
def test_same_grouping_as_clubak():
    rng = random.Random(12)
    outputs = [[f"line {j} {rng.choice('ab')}" for j in range(3)] for _ in range(4)]
    lines = {f"node{n}": iter(rng.choice(outputs)) for n in rng.sample(range(1, 300), 60)}
    # interleave the nodes at random, each node's lines staying in their order
    order = [node for node in lines for _ in range(3)]
    rng.shuffle(order)
    data = "".join(f"{node}: {next(lines[node])}\n" for node in order).encode()
    clubak = pathlib.Path(sys.executable).parent / "clubak"
    peer = subprocess.run(
        [str(clubak) if clubak.exists() else "clubak", "-b"],
        input=data,
        capture_output=True,
        timeout=60,
    )
    ours = subprocess.run(
        [sys.executable, "-m", "easycluster", "gather", "-b"],
        input=data,
        capture_output=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert peer.returncode == 0 and ours.returncode == 0
    expected = _clubak_blocks(peer.stdout.decode())
    assert _our_blocks(ours.stdout.decode()) == expected
    assert len(expected) > 1


def test_regroup_with_a_groups_file_matches_clubak(tmp_path, capsysbinary, monkeypatch):
    conf = tmp_path / "groups.conf"
    conf.write_text(
        "[Main]\ndefault: racks\n\n[racks]\n"
        "map: case $GROUP in rack1) echo n[1-4];; rack2) echo n[5-8];; esac\n"
        "list: echo rack1 rack2\n"
    )
    data = b"".join(b"n%d: up\n" % i for i in range(1, 7)) + b"n9: down\n"
    code, out, err = run(["-b", "-r", "--groupsconf", str(conf)], data, capsysbinary, monkeypatch)
    assert code == 0, err
    assert out == hdr("@rack1,n[5-6] (6 nodes)") + b"up\n" + hdr("n9") + b"down\n"
    code, out, _ = run(
        ["-b", "-r", "-s", "racks", "--groupsconf", str(conf)], data, capsysbinary, monkeypatch
    )
    assert out.startswith(hdr("@racks:rack1,n[5-6] (6 nodes)"))
    code, out, _ = run(
        ["-b", "-r", "-G", "-s", "racks", "--groupsconf", str(conf)],
        data,
        capsysbinary,
        monkeypatch,
    )
    assert out.startswith(hdr("@rack1,n[5-6] (6 nodes)"))
    code, _, err = run(
        ["-b", "-s", "nope", "--groupsconf", str(conf)], data, capsysbinary, monkeypatch
    )
    assert code == 2 and "-s nope: unknown group source (known: racks)" in err
    code, _, err = run(
        ["-b", "--groupsconf", str(tmp_path / "none")], data, capsysbinary, monkeypatch
    )
    assert code == 2 and "cannot read it" in err
    clubak = shutil.which("clubak", path=os.path.dirname(sys.executable))
    if clubak:  # the peer, where installed (the project's venv has it)
        peer = subprocess.run(
            [clubak, "-b", "-r", "--groupsconf", str(conf), "--color=never"],
            input=data,
            capture_output=True,
            timeout=30,
        )
        assert b"@rack1,n[5-6] (6)" in peer.stdout  # the same folding, its own header style


def test_axis_folds_headers_along_some_axes(capsysbinary, monkeypatch):
    data = b"".join(b"n%d-%d: up\n" % (i, j) for i in (1, 2) for j in (1, 2, 3))
    code, out, _ = run(["-b"], data, capsysbinary, monkeypatch)
    assert out == hdr("n[1-2]-[1-3] (6 nodes)") + b"up\n"
    code, out, _ = run(["-b", "--axis", "2"], data, capsysbinary, monkeypatch)
    assert out == hdr("n1-[1-3],n2-[1-3] (6 nodes)") + b"up\n"
    code, _, err = run(["-b", "--axis", "1-x"], data, capsysbinary, monkeypatch)
    assert code == 2 and "bad --axis '1-x'" in err


def test_a_crlf_line_is_gathered_with_its_lf_twin(capsysbinary, monkeypatch):
    code, out, _ = run(["-b"], b"n1: a\r\nn2: a\n", capsysbinary, monkeypatch)
    assert (code, out) == (0, hdr("n[1-2] (2 nodes)") + b"a\n")


def test_what_a_clubak_user_met_in_an_audit(capsysbinary, monkeypatch, tmp_path):
    # CR LF dropped when a key is a node set too (the second reading of the input)
    code, out, _ = run(["-b"], b"n[1-2]:x\r\nn3:x\r\n", capsysbinary, monkeypatch)
    assert out == hdr("n[1-3] (3 nodes)") + b"x\n"
    # never: keys are text, never folded
    code, out, _ = run(["-b", "--interpret-keys=never"], b"n1:a\nn2:a\n", capsysbinary, monkeypatch)
    assert out == hdr("n1,n2 (2 nodes)") + b"a\n"
    # a lone backslash as separator is itself
    code, out, err = run(["-S", "\\"], b"n1\\a\n", capsysbinary, monkeypatch)
    assert (code, out) == (0, hdr("n1") + b"a\n")
    # -r gathers, as clubak's
    code, out, _ = run(["-r"], b"n1:a\nn2:a\n", capsysbinary, monkeypatch)
    assert out == hdr("n[1-2] (2 nodes)") + b"a\n"
