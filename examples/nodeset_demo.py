"""A tour of easycluster.nodeset: notation, set algebra, groups and the command.

Run: python examples/nodeset_demo.py   (exits 0; prints each step)
"""

from __future__ import annotations

import os
import tempfile
import textwrap

from easycluster.cli.nodeset import main as nodeset_command
from easycluster.errors import NodeSetParseError
from easycluster.nodeset import NodeSet
from easycluster.nodeset.groups import GroupResolver


def show(label: str, value: object) -> None:
    print(f"{label:<44} {value}")


def main() -> int:
    nodes = NodeSet("node[001-100],login[1-2]")
    show("NodeSet('node[001-100],login[1-2]')", nodes)
    show("len()", len(nodes))
    show("first three names", list(nodes)[:3])
    show("nodes[2], nodes[2:5]", (nodes[2], str(nodes[2:5])))

    show("difference: ! operator", NodeSet("node[1-10]!node[3-4]"))
    show("left to right: n[1-10]!n[3-4]&n[2-8]^n[8-9]", NodeSet("n[1-10]!n[3-4]&n[2-8]^n[8-9]"))
    a, b = NodeSet("n[1-10]"), NodeSet("n[5-15]")
    show("a | b, a & b, a - b, a ^ b", (str(a | b), str(a & b), str(a - b), str(a ^ b)))
    show("two dimensions: r[1-2]n[1-3] minus r2n2", NodeSet("r[1-2]n[1-3]!r2n2"))
    show("fold a list of names", NodeSet.fromlist(["n3", "n1", "n2", "n10", "x"]))
    show("autostep=3", NodeSet("n1,n3,n5,n7,n20", autostep=3))
    show("split(3)", [str(p) for p in NodeSet("n[1-10]").split(3)])
    show("contiguous()", [str(p) for p in NodeSet("n[1-3,7-8]").contiguous()])

    try:
        NodeSet("node[5-3]")
    except NodeSetParseError as exc:
        show("parse error (part, message)", (exc.part, exc.msg))

    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "racks.groups"), "w") as handle:
            handle.write("rack1: n[1-4]\nrack2: n[5-8]\n")
        conf = os.path.join(tmp, "groups.conf")
        with open(conf, "w") as handle:
            handle.write(
                textwrap.dedent("""\
                [Main]
                default = racks
                [racks]
                file = racks.groups
                [parity]
                map = case $GROUP in odd) echo 'n[1-7/2]';; even) echo 'n[2-8/2]';; esac
                list = echo odd even
                """)
            )
        resolver = GroupResolver.from_file(conf)
        show("@rack1,@parity:odd", NodeSet("@rack1,@parity:odd", resolver=resolver))
        show("regroup n[1-6]", NodeSet("n[1-6]").regroup(resolver))
        print("$ easycluster nodeset --groupsconf groups.conf -r n[1-8] -x n8")
        code = nodeset_command(["--groupsconf", conf, "-r", "n[1-8]", "-x", "n8"])
        show("exit code", code)
    print("$ easycluster nodeset -c node[1-1000000]")
    nodeset_command(["-c", "node[1-1000000]"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
