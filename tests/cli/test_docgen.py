"""Man pages and shell completion (``cli/docgen.py``, ``commandinfo.py``, ``manpage.py``,
``completion.py``): the committed copies are what the parsers generate; the bash script
really completes, driven by bash itself; the zsh script parses (``zsh -n``); the man
pages render with groff without a warning and document every option of every parser;
and the subcommands start without the engine and the client stack.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
from typing import List

import pytest

from easycluster.cli import DEFAULT, SUBCOMMANDS, main
from easycluster.cli.commandinfo import Command, describe, exit_codes, load_commands
from easycluster.cli.completion import script
from easycluster.cli.docgen import COMPLETION_DIR, COMPLETION_FILES, MAN_DIR, generated_files
from easycluster.cli.manpage import man_pages, roff
from easycluster.cli.parsing import Parser

pytestmark = pytest.mark.timeout(60)
ROOT = pathlib.Path(__file__).resolve().parents[2]
REGENERATE = (
    "easycluster --man-pages docs/man; easycluster --completion bash > "
    "docs/completion/easycluster.bash; easycluster --completion zsh > docs/completion/_easycluster"
)


@pytest.fixture(scope="module")
def commands() -> List[Command]:
    return load_commands(SUBCOMMANDS, DEFAULT)


def by_name(commands: List[Command], name: str) -> Command:
    return next(c for c in commands if c.name == name)


def flags(cmd: Command) -> List[str]:
    return [f for o in cmd.options for f in o.flags]


# -- the committed copies ---------------------------------------------------------------


@pytest.mark.parametrize("columns", ["40", "200"])  # argparse wraps usage to the terminal
def test_committed_copies_are_what_the_parsers_generate(columns, monkeypatch):
    monkeypatch.setenv("COLUMNS", columns)
    files = generated_files(load_commands(SUBCOMMANDS, DEFAULT))
    assert sorted(files) == sorted(
        [os.path.join(MAN_DIR, f"easycluster{n and '-' + n}.1") for n in ["", *SUBCOMMANDS]]
        + [os.path.join(COMPLETION_DIR, n) for n in COMPLETION_FILES.values()]
    )
    stale = [p for p, text in files.items() if (ROOT / p).read_text(encoding="utf-8") != text]
    assert not stale, f"stale generated files {stale}: regenerate with {REGENERATE}"
    on_disk = {
        str(p.relative_to(ROOT)) for d in (MAN_DIR, COMPLETION_DIR) for p in (ROOT / d).iterdir()
    }
    assert on_disk == set(files), "a file in docs/man or docs/completion that is not generated"


def test_completion_option_prints_each_script(commands, capsys):
    for shell in ("bash", "zsh"):
        assert main(["--completion", shell]) == 0
        assert capsys.readouterr().out == script(shell, commands)
    assert main(["--completion=bash"]) == 0
    assert capsys.readouterr().out == script("bash", commands)


def test_man_pages_option_writes_every_page(commands, tmp_path):
    assert main(["--man-pages", str(tmp_path / "man1")]) == 0
    written = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "man1").iterdir()}
    assert written == man_pages(commands)


def test_docgen_usage_mistakes_exit_2(capsys):
    assert main(["--completion", "fish"]) == 2
    assert "invalid choice: 'fish'" in capsys.readouterr().err
    assert main(["--completion", "bash", "--man-pages", "x"]) == 2
    assert "not allowed with" in capsys.readouterr().err
    # after another option they reach the server command, which refuses them
    assert main(["-S", "--completion", "bash"]) == 2
    assert "--completion and --man-pages take no other options" in capsys.readouterr().err


# -- reading a parser -------------------------------------------------------------------


def test_exit_codes_are_read_from_the_epilog():
    assert exit_codes("Exit codes: 0 ok, 1 error, 2 usage.", "x") == (
        (0, "ok"),
        (1, "error"),
        (2, "usage"),
    )
    assert exit_codes("Exit codes: 0 ok; 250 a, b or c; 2 usage.", "x")[1] == (250, "a, b or c")
    for bad in ("no codes here", "Exit codes: 0 ok; 1 failure.", "Exit codes: 0 ok; two; 2 x"):
        with pytest.raises(ValueError):
            exit_codes(bad, "x")


def test_every_command_states_its_exit_codes(commands):
    codes = {c.name: dict(c.exit_codes) for c in commands}
    assert set(codes[""]) == {0, 1, 2, 130}
    assert {250, 251, 252, 253, 130} <= set(codes["shell"])
    assert {250, 251, 252, 254, 130} <= set(codes["farm"])
    assert set(codes["nodeset"]) == set(codes["gather"]) == {0, 1, 2}


def test_option_kinds_hidden_options_and_help_expansion():
    p = Parser(prog="t", epilog="Exit codes: 0 ok; 2 usage.")
    p.add_argument("-k", "--keyfile")  # metavar KEYFILE: a file
    p.add_argument("--dest", metavar="DIR")
    p.add_argument("--color", choices=("a", "b"), help="one of %(choices)s, %%h")
    p.add_argument("-v", action="count", default=0)
    p.add_argument("--secret", help=argparse.SUPPRESS)
    p.add_argument("words", nargs=argparse.REMAINDER)
    cmd = describe("t", sys.modules[__name__], p)
    kinds = {o.flags[0] if o.flags else o.metavar: o for o in cmd.options}
    assert "--secret" not in kinds
    assert kinds["-k"].takes == "file" and not kinds["-k"].repeatable
    assert kinds["--dest"].takes == "dir"
    assert kinds["--color"].takes == "choice" and kinds["--color"].choices == ("a", "b")
    assert kinds["--color"].help == "one of a, b, %h"
    assert kinds["-v"].takes == "" and kinds["-v"].repeatable
    assert kinds["words"].takes == "command"


def test_a_parser_without_exit_codes_is_refused():
    with pytest.raises(ValueError, match="states no 'Exit codes:'"):
        describe("t", sys.modules[__name__], Parser(prog="t"))


# -- bash, driven by bash ---------------------------------------------------------------


def complete_bash(words: List[str], cwd: pathlib.Path) -> List[str]:
    """What ``_easycluster`` offers for the command line ``words`` (the last one is
    being completed), run by bash with the generated script sourced."""
    path = ROOT / COMPLETION_DIR / COMPLETION_FILES["bash"]
    line = " ".join(shlex.quote(w) for w in words)
    program = (
        f"source {shlex.quote(str(path))}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}\n"
        '_easycluster; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no syntax error, no complaint (compopt's is silenced)
    return sorted(w for w in done.stdout.split("\n") if w)


@pytest.fixture
def files(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "groups.conf").write_text("")
    (tmp_path / "groups.yaml").write_text("")
    (tmp_path / "gone").mkdir()
    return tmp_path


def test_bash_completes_subcommands(files):
    assert complete_bash(["easycluster", "sh"], files) == ["shell"]
    assert complete_bash(["easycluster", ""], files) == sorted(SUBCOMMANDS)
    assert complete_bash(["easycluster", "--comp"], files) == ["--completion"]


def test_bash_completes_every_option_of_every_command(commands, files):
    for cmd in commands:
        words = ["easycluster", cmd.name] if cmd.name else ["easycluster"]
        assert complete_bash(words + ["-"], files) == sorted(flags(cmd)), cmd.name
        assert complete_bash(words + ["--"], files) == sorted(
            f for f in flags(cmd) if f.startswith("--")
        )


def test_bash_completes_choices_also_after_an_equals_sign(files):
    assert complete_bash(["easycluster", "--completion", ""], files) == ["bash", "zsh"]
    assert complete_bash(["easycluster", "--completion", "=", "z"], files) == ["zsh"]
    assert complete_bash(["easycluster", "--completion", "="], files) == ["bash", "zsh"]
    assert complete_bash(["easycluster", "shell", "--color", "a"], files) == ["always", "auto"]
    assert complete_bash(["easycluster", "farm", "-R", ""], files) == ["local", "ssh"]


def test_bash_completes_files_and_directories_where_an_option_takes_them(files):
    assert complete_bash(["easycluster", "nodeset", "--groupsconf", "gro"], files) == [
        "groups.conf",
        "groups.yaml",
    ]
    assert complete_bash(["easycluster", "-k", "g"], files) == [
        "gone",
        "groups.conf",
        "groups.yaml",
    ]
    assert complete_bash(["easycluster", "shell", "--dest", "g"], files) == ["gone"]
    assert complete_bash(["easycluster", "farm", "-J", "groups.c"], files) == ["groups.conf"]


def test_bash_knows_which_command_an_option_belongs_to(files):
    # -p: the server's port (a number: nothing offered), shell's --preserve (a flag, so
    # the next word is the command's: files)
    assert complete_bash(["easycluster", "-p", "g"], files) == []
    assert complete_bash(["easycluster", "shell", "-p", "g"], files) == [
        "gone",
        "groups.conf",
        "groups.yaml",
    ]
    # node sets are not completed (it would run the group sources on every key press)
    assert complete_bash(["easycluster", "shell", "-w", "g"], files) == []
    assert complete_bash(["easycluster", "nodeset", "g"], files) == []
    # a subcommand is only ever the first argument
    assert complete_bash(["easycluster", "-v", "sh"], files) == []


# -- zsh --------------------------------------------------------------------------------


def test_zsh_script_parses(commands):
    text = (ROOT / COMPLETION_DIR / COMPLETION_FILES["zsh"]).read_text(encoding="utf-8")
    assert text.startswith("#compdef easycluster\n")
    for cmd in commands:  # every option of every command is in its _arguments spec
        assert all(f in text for f in flags(cmd)), cmd.name
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed: only its syntax check is skipped")
    done = subprocess.run(
        [zsh, "-n", str(ROOT / COMPLETION_DIR / COMPLETION_FILES["zsh"])],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


# -- man pages --------------------------------------------------------------------------


def test_man_pages_have_every_section_and_every_option(commands):
    pages = man_pages(commands)
    for cmd in commands:
        page = pages[f"{cmd.page}.1"]
        heads = [line[4:] for line in page.splitlines() if line.startswith(".SH ")]
        assert heads == ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "SEE ALSO"]
        for flag in flags(cmd):
            assert f"\\fB{roff(flag)}\\fR" in page, (cmd.page, flag)
        for code, _ in cmd.exit_codes:
            assert f".TP\n\\fB{code}\\fR\n" in page
    assert "\\-\\-class" not in pages["easycluster.1"]  # help=SUPPRESS stays hidden
    assert "\\-\\-node\\fR" not in pages["easycluster-nodeset.1"]


def render(path: pathlib.Path) -> str:
    """The page as plain text, by groff; fails on any groff warning."""
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed")
    done = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", "-P-cbou", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "MANWIDTH": "80"},
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout.replace("\u2212", "-").replace("\u2010", "-")


def test_man_pages_render_and_show_every_option(commands):
    for cmd in commands:
        text = render(ROOT / MAN_DIR / f"{cmd.page}.1")
        words = set(text.replace(",", " ").split())
        assert cmd.page in text and "EXIT STATUS" in text
        missing = [f for f in flags(cmd) if f not in words]
        assert not missing, (cmd.page, missing)


def test_man_l_reads_a_page():
    man = shutil.which("man")
    if man is None:
        pytest.skip("man is not installed")
    done = subprocess.run(
        [man, "-l", str(ROOT / MAN_DIR / "easycluster-shell.1")],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "80"},
    )
    assert done.returncode == 0, done.stderr
    assert "easycluster-shell - run a command on many nodes" in done.stdout


# -- start-up ---------------------------------------------------------------------------

HEAVY = (
    "easycluster.client",  # the client stack
    "easycluster.launch",
    "easycluster.cluster.task",  # the engine and its backends
    "easycluster.cluster.engine",
    "easycluster.cluster.farm",
    "cloudpickle",
)


@pytest.mark.parametrize(
    "argv",
    [
        ["nodeset", "-c", "n[1-10]"],
        ["shell", "--help"],
        ["farm", "--help"],
        ["gather", "--help"],
        ["--version"],
        ["--completion", "bash"],
    ],
)
def test_subcommands_start_without_the_engine_or_the_client_stack(argv):
    """What keeps start-up near a bare interpreter (``bench/bench_cli_startup.py`` times
    it): modules counted, not seconds."""
    program = (
        "import contextlib, io, sys\n"
        "from easycluster.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main({argv!r})\n"
        f"heavy = sorted(m for m in sys.modules if m.partition('.')[0] == 'cloudpickle'\n"
        f"    or any(m == h or m.startswith(h + '.') for h in {HEAVY!r}))\n"
        "print(code, heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0 []"
