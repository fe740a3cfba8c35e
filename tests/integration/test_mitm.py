"""A man in the middle corrupts the byte stream of a real connection (issue 18, item 1).

The proxy below sits between a client process and a server process on loopback, parses
the frames going one way and alters the first one carrying a real payload: one length
bit flipped (no key needed to do that), bytes dropped, bytes repeated, or the stream cut.
Every case must end in an error for the caller, never in a wait for bytes that will not
come, and neither end may allocate what a forged length announces. Both ends run in
processes of their own, so the peak resident size each reports (``VmHWM`` from
``/proc/self/status``, read as it ends) is its own. The server is the package's code for
one connection (``remote.process.main_socket``: a handshake, then serve, what a
``fresh_interpreter`` local server runs), on a TCP port; the last test goes through the
real ``easycluster -S`` as well.

Waits are bounded by the client's ``call_timeout`` and pytest-timeout, never measured:
a corruption that went unnoticed shows up as ``CallTimeout`` instead of an error.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from typing import Callable, Optional

import pytest

import easycluster
from easycluster.protocol import frames, handshake

HOST = "127.0.0.1"
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(easycluster.__file__)))
BIG = 1000  # the first frame with at least this much payload is the one altered
CALL_TIMEOUT = 20  # seconds: well above any detection, well below pytest's timeout
PEAK_LIMIT_KIB = 200 * 1024  # generous: a forged length asks for 512 MiB more

PEAK = """
def peak_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1
"""

# One connection served by the package's server code; reports its peak as it ends (the
# server ends its process with os._exit, so the report is hooked there).
SERVER = (
    PEAK
    + """
import os, socket, sys
sys.path.insert(0, sys.argv[1])
from easycluster.remote.process import main_socket
key = bytes.fromhex(sys.stdin.readline().strip())
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
listener.close()
real_exit = os._exit
def report_and_exit(code):
    print(peak_kib(), flush=True)
    real_exit(code)
os._exit = report_and_exit
main_socket(conn, key)
report_and_exit(0)
"""
)

# A plain Client: one call with a big request, one with a big reply.
CLIENT = (
    PEAK
    + """
import json, sys
sys.path.insert(0, sys.argv[1])
import easycluster
from easycluster.errors import ConnectionLost
key = bytes.fromhex(sys.stdin.readline().strip())
out = {"results": []}
try:
    c = easycluster.Client(
        key, "127.0.0.1", int(sys.argv[2]), connect_timeout=10, call_timeout=float(sys.argv[3])
    )
    out["results"].append(c.eval("len(%r)" % ("x" * 5000)))
    out["results"].append(len(c.eval("'y' * 5000")))
    c.close()
except Exception as e:
    out["error"] = type(e).__name__
    out["lost"] = isinstance(e, ConnectionLost)
    out["message"] = str(e)
out["peak_kib"] = peak_kib()
print(json.dumps(out), flush=True)
"""
)


def flip_length(frame: bytes) -> bytes:
    bad = bytearray(frame)
    bad[12 + 4] ^= 0x20  # bit 29 of the u64 length at offset 12: 512 MiB more
    return bytes(bad)


def drop(frame: bytes) -> bytes:
    mid = len(frame) // 2
    return frame[:mid] + frame[mid + 3 :]


def duplicate(frame: bytes) -> bytes:
    mid = len(frame) // 2
    return frame[: mid + 3] + frame[mid : mid + 3] + frame[mid + 3 :]


MUTATIONS = {"flip-length": flip_length, "drop": drop, "duplicate": duplicate, "truncate": None}


class Mitm:
    """Forwards one connection; in ``direction`` ("c2s" or "s2c") it reads whole frames
    after the handshake and alters the first with ``BIG`` payload bytes or more with
    ``mutate`` (``None``: send half of it and close), passing the rest through as is."""

    def __init__(self, target: int, direction: str, mutate: Optional[Callable[[bytes], bytes]]):
        self.target = target
        self.direction = direction
        self.mutate = mutate
        self.altered = threading.Event()
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:  # closed before anyone connected
            return
        with client, socket.create_connection((HOST, self.target)) as server:
            up = threading.Thread(
                target=self.pump,
                args=(client, server, "c2s", handshake.CLIENT_HELLO_SIZE),
                daemon=True,
            )
            up.start()
            self.pump(server, client, "s2c", handshake.SERVER_HELLO_SIZE + handshake.ACCEPT_SIZE)
            up.join(30)

    def pump(self, src: socket.socket, dst: socket.socket, direction: str, skip: int) -> None:
        buf = bytearray()
        through = direction != self.direction
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if through:
                    dst.sendall(data)
                    continue
                buf += data
                out = bytearray()
                while True:
                    if skip:  # the handshake, untouched
                        take = min(skip, len(buf))
                        out += buf[:take]
                        del buf[:take]
                        skip -= take
                        if skip:
                            break
                    if len(buf) < frames.HEADER_SIZE:
                        break
                    length = frames.HEADER.unpack_from(buf)[4]
                    total = frames.HEADER_SIZE + length + frames.MAC_SIZE
                    if len(buf) < total:
                        break
                    frame = bytes(buf[:total])
                    del buf[:total]
                    if length < BIG:
                        out += frame
                        continue
                    self.altered.set()
                    if self.mutate is None:
                        dst.sendall(bytes(out) + frame[: len(frame) // 2])
                        return  # (and close both ways)
                    out += self.mutate(frame) + buf
                    buf.clear()
                    through = True
                    break
                if out:
                    dst.sendall(bytes(out))
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(30)


def run_script(source: str, *args: str, key: bytes) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", source, PACKAGE_ROOT, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(key.hex() + "\n")
    proc.stdin.close()
    proc.stdin = None  # (communicate() would flush it again)
    return proc


def run_client(port: int, key: bytes) -> dict:
    proc = run_script(CLIENT, str(port), str(CALL_TIMEOUT), key=key)
    try:
        out, _ = proc.communicate(timeout=CALL_TIMEOUT * 3)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return json.loads(out)


@pytest.fixture
def one_connection_server(key):
    """Start the one-connection server; yields (port, finish) where finish() waits for it
    to end and returns its peak resident size in KiB."""
    proc = run_script(SERVER, key=key)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())

    def finish() -> int:
        out, _ = proc.communicate(timeout=CALL_TIMEOUT * 3)
        return int(out.split()[-1])

    try:
        yield port, finish
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_the_proxy_passes_an_unaltered_conversation(one_connection_server, key):
    # The control: with nothing altered both calls succeed through the proxy.
    port, finish = one_connection_server
    mitm = Mitm(port, "c2s", lambda frame: frame)
    try:
        got = run_client(mitm.port, key)
    finally:
        mitm.close()
    assert got["results"] == [5000, 5000], got
    assert mitm.altered.is_set()
    assert finish() < PEAK_LIMIT_KIB


@pytest.mark.timeout(CALL_TIMEOUT * 4)
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize("direction", ["c2s", "s2c"])
def test_corrupted_stream_is_an_error_not_a_wait(one_connection_server, key, direction, mutation):
    port, finish = one_connection_server
    mitm = Mitm(port, direction, MUTATIONS[mutation])
    try:
        got = run_client(mitm.port, key)
    finally:
        mitm.close()
    server_peak = finish()
    assert mitm.altered.is_set()
    assert got.get("error") != "CallTimeout", got  # noticed, not waited out
    assert got.get("lost"), got  # ConnectionLost or one of its ProtocolErrors
    # neither end allocated what a forged length announced
    assert got["peak_kib"] < PEAK_LIMIT_KIB, got
    assert server_peak < PEAK_LIMIT_KIB, server_peak


@pytest.mark.timeout(CALL_TIMEOUT * 4)
@pytest.mark.parametrize("mutation", ["flip-length", "drop"])
@pytest.mark.parametrize("direction", ["c2s", "s2c"])
def test_corruption_through_the_standalone_server(tcp_server, key, direction, mutation):
    mitm = Mitm(tcp_server.port, direction, MUTATIONS[mutation])
    try:
        got = run_client(mitm.port, key)
    finally:
        mitm.close()
    assert mitm.altered.is_set()
    assert got.get("error") != "CallTimeout", got
    assert got.get("lost"), got
    assert got["peak_kib"] < PEAK_LIMIT_KIB, got
    c = easycluster.Client(key, HOST, tcp_server.port, connect_timeout=10, call_timeout=10)
    try:
        assert c.eval("6 * 7") == 42  # the server serves the next client
    finally:
        c.close()
