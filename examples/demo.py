"""The main job, on this machine: start servers, call them, show what happens.

    make demo        (or: .venv/bin/python examples/demo.py)

Starts two kinds of server with nothing else set up: a standalone TCP server
(`easycluster -S`, with a fresh key file) and three `spawn_local` servers, then shows
define_common calls, remote exceptions, non-blocking calls and a call over several servers.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time

import easycluster
from easycluster import (
    Client,
    RemoteException,
    call_multi,
    define_common,
    read_key_file,
    write_key_file,
)
from easycluster.server import spawn_local

define_common("""
import os, socket, time

def addvals(a, b):
    return a + b

def whoami():
    return f"pid {os.getpid()} on {socket.gethostname()}"

def divide(a, b):
    return a / b

def work(seconds, tag):
    time.sleep(seconds)
    return f"{tag} done after {seconds:g} s in pid {os.getpid()}"
""")


def banner(text: str) -> None:
    print(f"\n== {text}")


def start_tcp_server(keyfile: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "easycluster",
            "-S",
            "-k",
            keyfile,
            "-p",
            "0",
            "-b",
            "127.0.0.1",
            "-v",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    print("server says:", line.strip())
    return proc, int(line.rsplit(":", 1)[1].split()[0])


def main() -> int:
    print(f"EasyCluster {easycluster.VERSION}: master pid {os.getpid()}")
    with tempfile.TemporaryDirectory() as tmp:
        keyfile = os.path.join(tmp, "secret.key")
        write_key_file(keyfile)
        print(f"made key file {keyfile} (mode {os.stat(keyfile).st_mode & 0o777:o})")

        banner("a standalone server: easycluster -S -k KEYFILE")
        proc, port = start_tcp_server(keyfile)
        try:
            with Client(read_key_file(keyfile), "127.0.0.1", port) as rmt:
                print("rmt.addvals(3, 4) ->", rmt.addvals(3, 4))
                print("rmt.whoami() ->", rmt.whoami())
                print("rmt.os.path.join('a', 'b') ->", rmt.os.path.join("a", "b"))
                rmt.counter.value = 41
                print("rmt.counter.value = 41; rmt.eval('counter + 1') ->", rmt.eval("counter + 1"))

                banner("exceptions come back with the remote traceback")
                try:
                    rmt.divide(1, 0, origexc="quiet")
                except ZeroDivisionError as e:
                    print("caught ZeroDivisionError:", e)
                try:
                    rmt.divide(1, 0, origexc=False)
                except RemoteException as e:
                    print("as RemoteException, the remote traceback's end:")
                    for line in "".join(e.text).splitlines()[-3:]:
                        print("   ", line)

                banner("a lambda from this script runs there (cloudpickle)")
                scale = 3
                rmt.scaler.value = lambda x: x * scale
                print("rmt.scaler.value = lambda x: x * scale; rmt.scaler(14) ->", rmt.scaler(14))

                banner("wrong key: refused before anything runs")
                try:
                    Client(easycluster.generate_key(), "127.0.0.1", port)
                except easycluster.AuthenticationError as e:
                    print("AuthenticationError:", e)
        finally:
            proc.terminate()
            proc.wait()
            for line in proc.stderr or []:
                print("server log:", line.rstrip())

        banner("three local servers (spawn_local: forked from a clean zygote process)")
        servers = [spawn_local() for _ in range(3)]
        for s in servers:
            print(s, "->", s.whoami())

        banner("non-blocking calls run at the same time")
        t = time.perf_counter()
        responses = [s.work(0.5, f"job{i}", nonblocking=True) for i, s in enumerate(servers)]
        for r in responses:
            print("  ", r.wait())
        print(f"3 x 0.5 s of work took {time.perf_counter() - t:.2f} s")

        banner("responses are futures: concurrent.futures.as_completed")
        futs = [s.work(0.1 * (3 - i), f"f{i}", nonblocking=True) for i, s in enumerate(servers)]
        for f in concurrent.futures.as_completed(futs, timeout=10):
            print("  ", f.result())

        banner("one call over several servers: call_multi")
        print("call_multi(servers, 'addvals', 1, 100) ->", call_multi(servers, "addvals", 1, 100))
        print(
            "with a bound and per-host progress ->",
            call_multi(
                servers,
                "work",
                0.1,
                "late?",
                call_timeout=5,
                on_result=lambda host, value: print(f"   {host}: {value}"),
            ),
        )
        for s in servers:
            s.close()
    print("\ndemo finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
