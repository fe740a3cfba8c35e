"""A master making only blocking calls on a plain client never loads ``concurrent.futures``
(nor ``logging``, which it imports): ``client/response.py`` is loaded by the first call
that needs a Response, and from then on the Futures work as before. Nor ``typing``: the
client's modules keep their annotations under ``TYPE_CHECKING = False``."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT, ServerProcess

SCRIPT = """
import sys
import easycluster

easycluster.define_common("def add(a, b):\\n    return a + b\\n")  # (its preamble too)
key = easycluster.read_key_file(sys.argv[1])
c = easycluster.Client(key, "127.0.0.1", int(sys.argv[2]), connect_timeout=5)
assert c.eval("6 * 7") == 42 and c.add(1, 2) == 3
LAZY = ("concurrent.futures", "logging", "typing")
print("after a blocking call:", *(m in sys.modules for m in LAZY))
resp = c.eval("2 + 2", nonblocking=True)
import concurrent.futures
assert isinstance(resp, concurrent.futures.Future)
done, _ = concurrent.futures.wait([resp], timeout=10)
assert done == {resp} and resp.wait() == 4
got = []
c.eval("1 / 0", oncomplete=lambda v: got.append(v), onerror=lambda e: got.append(type(e.orig)))
c.eval("0")  # (the callback's reply is read before this one's)
print("callback:", got)
c.close()
"""


def test_blocking_calls_do_not_load_concurrent_futures(keyfile):
    with ServerProcess("-k", keyfile, "-b", "127.0.0.1") as srv:
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, keyfile, str(srv.port)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert srv.stop() == 0
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "after a blocking call: False False False",
        "callback: [<class 'ZeroDivisionError'>]",
    ]
