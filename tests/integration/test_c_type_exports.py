"""Server classes made from C types export their C-level methods (``deque.append``):
'@auto' used to skip method descriptors, so with ``export_attrs=()`` a proxied deque had
no ``append``. Run in a fresh interpreter: registering a builtin type as a server class
would change what every later test's servers return."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import easycluster
from easycluster.server import spawn_local
easycluster.define_common(
    "import collections\\n"
    "from easycluster import make_server_class\\n"
    "make_server_class(collections.deque, export_attrs=())\\n"
    "def new_queue():\\n"
    "    return collections.deque()\\n"
)
with spawn_local() as rmt:
    q = rmt.new_queue()
    assert isinstance(q, easycluster.RemoteProxy), type(q)
    q.append(3)
    q.extend([4, 5])
    print(q.popleft(), q.pop())
"""


def test_auto_exports_methods_of_c_types(tmp_path):
    script = tmp_path / "ctypes_export.py"
    script.write_text(SCRIPT)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["3", "5"]
