"""Remote print, one rule on every transport (issue 17, item 4): what a remote function
writes to sys.stdout/sys.stderr comes back over the connection and is printed by the
client as ``host: line``, stdout to stdout and stderr to stderr, in order, before the
call's reply; ``remote_output=callable`` receives it, ``False`` turns it off."""

from __future__ import annotations

import threading

from easycluster import ThreadedClient, define_common
from easycluster.client.output import print_remote_output
from easycluster.server import spawn_local

define_common("""
import sys, threading

def ro_talk(n, partial=True):
    for i in range(n):
        print("line", i)
    print("to stderr", file=sys.stderr)
    if partial:
        print("no newline yet", end="")
    return n

def ro_bytes():
    sys.stdout.buffer.write("caf\\u00e9\\n".encode("utf-8"))
    return sys.stdout.isatty(), sys.stdout.fileno() in (1, 2)

def ro_threads(n):
    def worker(k):
        for i in range(50):
            print(f"t{k} {i} " + "x" * 100)
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
    return n
""")


def test_print_comes_back_prefixed_with_the_host(make_client, capsys):
    c = make_client()
    assert c.ro_talk(3) == 3
    out, err = capsys.readouterr()
    host = c.peername
    assert out == "".join(f"{host}: line {i}\n" for i in range(3)) + f"{host}: no newline yet\n"
    assert err == f"{host}: to stderr\n"


def test_a_sink_gets_the_text_in_order_before_the_reply(make_client):
    got = []
    c = make_client(remote_output=lambda host, stream, text: got.append((host, stream, text)))
    assert c.ro_talk(2) == 2
    host = c.peername
    assert got == [
        (host, "stdout", "line 0\n"),
        (host, "stdout", "line 1\n"),
        (host, "stderr", "to stderr\n"),
        (host, "stdout", "no newline yet"),  # flushed before the reply, not after
    ]
    got.clear()
    assert c.ro_bytes() == (False, True)  # .buffer decodes; fileno is the server's own
    assert got == [(host, "stdout", "caf\u00e9\n")]


def test_lines_from_many_threads_stay_whole(make_client):
    lines = []
    c = make_client(remote_output=lambda h, s, text: lines.extend(text.splitlines()))
    assert c.ro_threads(4) == 4
    assert len(lines) == 200
    assert all(line.endswith(" " + "x" * 100) and line.startswith("t") for line in lines)
    for k in range(4):  # each thread's lines in its own order
        mine = [int(line.split()[1]) for line in lines if line.startswith(f"t{k} ")]
        assert mine == list(range(50))


def test_off_leaves_the_client_quiet(make_client, capsys):
    c = make_client(remote_output=False)
    assert c.ro_talk(1, partial=False) == 1
    out, err = capsys.readouterr()  # (a local server may write to the real descriptor)
    assert f"{c.peername}:" not in out + err


def test_threaded_client_prints_from_its_reader():
    got, seen = [], threading.Event()

    def sink(host, stream, text):
        got.append((threading.current_thread() is not threading.main_thread(), text))
        seen.set()

    tc = spawn_local(ThreadedClient, remote_output=sink)
    try:
        assert tc.ro_talk(1, partial=False) == 1
        assert seen.wait(10)
        assert got[0] == (True, "line 0\n")
    finally:
        tc.close()


def test_default_sink_writes_to_the_right_stream(capsys):
    print_remote_output("n1", "stdout", "a\nb\n")
    print_remote_output("n1", "stderr", "c")
    out, err = capsys.readouterr()
    assert out == "n1: a\nn1: b\n" and err == "n1: c\n"
