"""``easycluster shell``'s options: ``build_parser`` (the command itself is ``shell.py``;
what each option does is told there and in docs/shell.md)."""

from __future__ import annotations

import argparse

from ..cluster.colorchoice import COLOR_CHOICES
from ..version import VERSION
from . import groupopts, shellconf
from .parsing import Parser

PROG = "easycluster shell"  # (here, with the parser: --help loads only this module)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``easycluster shell`` (clush's options where they exist)."""
    p = Parser(
        prog=PROG,
        description="Run a command on many nodes at once (over ssh, or a local command "
        "per node with -R exec) and gather what they print.",
        epilog="Exit codes: 0 all ok; 250 some node exited non-zero (-S: the largest "
        "code); 251 timed out; 252 unreachable; 253 host key refused; 254 could not "
        "start here; 130 interrupted (143/129: SIGTERM/SIGHUP, cleaned up the same way); "
        "1 failure; 2 usage.",
    )
    p.dash_values = ("-o", "--options")  # ssh options begin with '-': -o '-p 2222'
    nodes = p.add_argument_group("nodes")
    nodes.add_argument(
        "-w",
        dest="nodes",
        action="append",
        default=[],
        metavar="NODESET",
        help="nodes (node[1-8], @group, @sj:JOBID); without -w/-g/-a inside a SLURM "
        "allocation ($SLURM_JOB_ID set): the allocation's nodes",
    )
    nodes.add_argument(
        "--hostfile",
        "--machinefile",
        dest="hostfiles",
        action="append",
        default=[],
        metavar="FILE",
        help="nodes from FILE (names or node sets by blanks or lines, # comments)",
    )
    nodes.add_argument(
        "-x",
        dest="exclude",
        action="append",
        default=[],
        metavar="NODESET",
        help="leave these nodes out",
    )
    nodes.add_argument(
        "-g",
        "--group",
        dest="groups",
        action="append",
        default=[],
        metavar="GROUPS",
        help="the nodes of these groups (rack1,rack2; -s: of that source)",
    )
    nodes.add_argument(
        "-X",
        dest="exclude_groups",
        action="append",
        default=[],
        metavar="GROUPS",
        help="leave the nodes of these groups out",
    )
    nodes.add_argument("-a", "--all", action="store_true", help="every node of the groups")
    nodes.add_argument("--pick", type=int, metavar="N", help="run on N nodes picked at random")

    out = p.add_argument_group("output")
    out.add_argument("-b", "--dshbak", dest="gather", action="store_true", help="gather")
    out.add_argument(
        "-B", dest="gather_all", action="store_true", help="gather, stderr with stdout"
    )
    out.add_argument("-L", dest="lines", action="store_true", help="node: line, in node order")
    out.add_argument("-N", dest="nolabel", action="store_true", help="no node prefix or header")
    out.add_argument("--diff", action="store_true", help="diff each output with the commonest")
    groupopts.add_options(p.add_argument_group("groups"), "-g, -X, -a and -r")
    out.add_argument("--outdir", metavar="DIR", help="also write each node's stdout to DIR/NODE")
    out.add_argument("--errdir", metavar="DIR", help="also write each node's stderr to DIR/NODE")
    out.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    out.add_argument("-v", "--verbose", action="store_true", help="say what runs where")
    out.add_argument("-d", "--debug", action="store_true", help="-v, and each node's command line")
    out.add_argument(
        "-P",
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="a progress line on stderr (default: when it is a terminal)",
    )
    out.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress line"
    )
    out.add_argument(
        "--color", choices=COLOR_CHOICES, help="colours (auto: on a terminal, unless NO_COLOR)"
    )
    run = p.add_argument_group("running")
    run.add_argument(
        "-S",
        "--maxrc",
        dest="maxrc",
        action="store_true",
        help="exit with the largest remote exit code",
    )
    run.add_argument("-f", "--fanout", type=int, help="nodes at once (64)")
    run.add_argument(
        "-t",
        "--connect_timeout",
        type=float,
        metavar="SECONDS",
        help="give up connecting to a node after SECONDS (ssh's ConnectTimeout)",
    )
    run.add_argument(
        "-u",
        "--command_timeout",
        type=float,
        metavar="SECONDS",
        help="kill a node's command after SECONDS (the node counts as timed out)",
    )
    run.add_argument("-l", "--user", help="remote user name")
    run.add_argument(
        "-o", "--options", action="append", default=[], help="ssh options ('-F cfg -p 22')"
    )
    run.add_argument(
        "-R",
        "--worker",
        choices=("ssh", "exec", "rpc"),
        default=None,
        help="ssh (default: one ssh per node and command), exec (a local command per "
        "node, %%h the node) or rpc (our server on each node, started over ssh with "
        "nothing installed; its session serves every command of an interactive run)",
    )
    run.add_argument(
        "--keep",
        nargs="?",
        type=float,
        const=600.0,
        metavar="SECONDS",
        help="keep the rpc sessions open after this command, for the next ones with the "
        "same -l/-o/-t/ssh_path (a background keeper, like ssh's ControlPersist; it ends after "
        "SECONDS without a command, 600 by default, each --keep command setting them; one "
        "command at a time, the others wait); implies -R rpc",
    )
    run.add_argument(
        "--keep-exit",
        action="store_true",
        help="end the keeper of these -l/-o/-t options (no command)",
    )
    run.add_argument("-n", "--nostdin", action="store_true", help="do not send stdin to the nodes")
    shellconf.add_options(run)
    run.add_argument(
        "--topology",
        metavar="FILE",
        help="run through the gateways of this topology (tree mode; default: "
        "$EASYCLUSTER_TOPOLOGY or a topology.conf, see docs/tree.md)",
    )
    run.add_argument(
        "--no-topology", action="store_true", help="run flat, whatever topology is configured"
    )
    cp = p.add_argument_group("copy (the arguments are then the files)")
    cp.add_argument("-c", "--copy", action="store_true", help="copy files or dirs to the nodes")
    cp.add_argument(
        "--rcopy", action="store_true", help="copy files or dirs from the nodes (NAME.NODE)"
    )
    cp.add_argument(
        "--dest",
        metavar="DIR",
        help="where copies go (copy: default the same path; a leading ~/ is the node's home)",
    )
    cp.add_argument("-p", "--preserve", action="store_true", help="keep mode and mtime")
    p.add_argument("--version", action="version", version=f"easycluster {VERSION}")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command (several words)")
    return p
