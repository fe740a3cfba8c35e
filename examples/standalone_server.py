"""Start `easycluster -S` with a key file and connect to it, as a cluster admin would.

Run: .venv/bin/python examples/standalone_server.py
(On real nodes: `easycluster -g /etc/easycluster.key` once, then
`easycluster -S -k /etc/easycluster.key` on each node, and the key file copied to the master.)
"""

import os
import subprocess
import sys
import tempfile

from easycluster import Client, read_key_file, write_key_file

with tempfile.TemporaryDirectory() as tmp:
    keyfile = os.path.join(tmp, "secret.key")
    write_key_file(keyfile)
    server = subprocess.Popen(
        [sys.executable, "-m", "easycluster", "-S", "-k", keyfile, "-p", "0", "-b", "127.0.0.1"],
        stderr=subprocess.PIPE,
        text=True,
    )
    line = server.stderr.readline()  # "easycluster: serving on 127.0.0.1:PORT (pid N)"
    port = int(line.rsplit(":", 1)[1].split()[0])
    try:
        with Client(read_key_file(keyfile), "127.0.0.1", port) as rmt:
            print("server process for this connection:", rmt.os.getpid())
            print("platform there:", rmt.platform.platform())
    finally:
        server.terminate()
        server.wait()
