"""Channel over a real socketpair, with sessions from an in-memory handshake: large frames
in chunks, what a frame's buffer keeps alive, and a send cut short."""

from __future__ import annotations

import gc
import os
import socket
import threading
import time

import pytest
from helpers import session_pair

from easycluster.errors import ConnectionLost, IntegrityError
from easycluster.protocol import frames
from easycluster.transport import outbox
from easycluster.transport.channel import Channel


def channel_pair():
    """Two Channels over a socketpair, with sessions from an in-memory handshake."""
    c, s = session_pair()
    a, b = socket.socketpair()
    return Channel(a, c), Channel(b, s)


def send_in_thread(channel, *args) -> threading.Thread:
    t = threading.Thread(target=channel.send, args=args, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("n", [100_000, 5_000_000])  # a bytearray, and a mapping (>= 32 MiB)
def test_numpy_array_stays_valid_after_frame_reader_and_channel_are_gone(n):
    np = pytest.importorskip("numpy")
    from easycluster.objects import serialize

    arr = np.random.default_rng(n).random(n)
    cc, sc = channel_pair()
    main, bufs = serialize.dumps(arr)
    assert bufs  # out of band: the array is sent without a copy, in chunks
    t = send_in_thread(cc, frames.FT_RESPONSE, main, bufs)
    received = sc.recv(timeout=30)
    t.join(30)
    [frame] = received
    got = serialize.loads(*frame.parts())
    assert not got.flags.owndata  # built on the frame's buffer, not copied out of it
    cc.close()
    sc.close()
    del received, frame, cc, sc, t
    gc.collect()
    junk = [bytearray(b"\xa5") * (8 * n) for _ in range(3)]  # reuse any memory let go
    assert np.array_equal(got, arr)
    del junk


def test_large_frames_follow_each_other_and_small_ones_over_a_channel():
    cc, sc = channel_pair()
    bodies = [os.urandom(3_000_001), b"small", os.urandom(frames.CHUNK), os.urandom(40 << 20)]
    t = threading.Thread(
        target=lambda: [cc.send(frames.FT_REQUEST, b) for b in bodies], daemon=True
    )
    t.start()
    got: list = []
    while len(got) < len(bodies):
        got += [bytes(f.payload) for f in sc.recv(timeout=30)]
    t.join(30)
    assert got == bodies
    cc.close()
    sc.close()


class InterruptedSocket:
    """A socket whose second send raises KeyboardInterrupt: a fake, because a real Ctrl-C
    cannot be delivered between two chunks of a frame on demand."""

    def __init__(self, sock: socket.socket):
        self._sock, self.calls = sock, 0

    def _count(self) -> None:
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt

    def sendmsg(self, buffers):
        self._count()
        return self._sock.sendmsg(buffers)

    def sendall(self, data):
        self._count()
        return self._sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def test_send_interrupted_between_chunks_breaks_the_channel():
    cc, sc = channel_pair()
    cc.sock = InterruptedSocket(cc.sock)
    seen: list = []

    def read():
        try:
            seen.extend(sc.recv(timeout=30))
        except Exception as e:
            seen.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with pytest.raises(KeyboardInterrupt):
        cc.send(frames.FT_REQUEST, os.urandom(3 * frames.CHUNK))  # only part of it left
    assert cc.closed  # nothing may follow half a frame
    with pytest.raises(ConnectionLost):
        cc.send(frames.FT_REQUEST, b"next")
    reader.join(30)
    [error] = seen  # the peer saw the stream end inside the frame, and no frame
    assert isinstance(error, IntegrityError) and "truncated" in str(error)
    sc.close()
    cc.close()


def writers() -> int:
    return sum(t.name == "easycluster-writer" for t in threading.enumerate())


def writer_threads() -> set:
    """The writer threads alive now (a set: older channels' writers may end meanwhile)."""
    return {t for t in threading.enumerate() if t.name == "easycluster-writer"}


def small_buffer_pair(timeout=None):
    """``channel_pair`` over a socketpair of 16 KiB buffers (a few bodies fill it); the
    server end's socket gets ``timeout``."""
    c, s = session_pair()
    a, b = socket.socketpair()
    for sock in (a, b):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 14)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 14)
    b.settimeout(timeout)
    return Channel(a, c), Channel(b, s)


def test_post_later_on_an_idle_socket_sends_at_once_without_a_writer_thread():
    cc, sc = channel_pair()
    before = writers()
    sc.post_later(frames.FT_PONG, b"pong")  # (as a server's reader answers a ping)
    assert writers() == before  # written by the caller: no thread started for it
    [f] = cc.recv(timeout=30)
    assert (f.type, f.payload) == (frames.FT_PONG, b"pong")
    cc.close()
    sc.close()


def test_a_post_apart_from_others_leaves_at_once_and_a_burst_goes_to_the_writer(monkeypatch):
    # A post without flush is a burst when it follows the last post within BURST_GAP
    # (made long here, so that the test cannot be too slow for a burst): the first
    # post is lone and written by the caller, the two after it wait for the writer
    # thread; all arrive in order, and a post apart from the burst is lone again.
    cc, sc = channel_pair()
    before = writer_threads()
    monkeypatch.setattr(outbox, "BURST_GAP", 30.0)
    cc.post(frames.FT_REQUEST, b"first", False)
    assert not writer_threads() - before  # written by the caller: no thread started
    cc.post(frames.FT_REQUEST, b"second", False)
    cc.post(frames.FT_REQUEST, b"third", False)
    assert writer_threads() - before  # the burst went to a writer thread
    got: list = []
    while len(got) < 3:
        more = sc.recv(timeout=30)
        assert more, f"{got} came, then nothing for 30 s"
        got += [bytes(f.payload) for f in more]
    assert got == [b"first", b"second", b"third"]
    monkeypatch.setattr(outbox, "BURST_GAP", 0.0)  # (every post is apart from the last)
    cc.post(frames.FT_REQUEST, b"fourth", False)
    [f] = sc.recv(timeout=30)
    assert (f.type, f.payload) == (frames.FT_REQUEST, b"fourth")
    cc.close()
    sc.close()


@pytest.mark.parametrize("timeout", [None, 120.0])
def test_post_later_never_blocks_on_a_full_socket_and_keeps_the_order(timeout):
    # The peer reads nothing: the bodies posted by the reader fill the socket, then one
    # is taken only in part (its rest left to a thread of its own), then they queue.
    # Each call returns at once; once the peer reads, all arrive whole and in order. (A
    # socket with a timeout would make a send wait for room: such a channel queues.)
    cc, sc = small_buffer_pair(timeout)
    bodies = [i.to_bytes(4, "big") + os.urandom(3000) for i in range(200)]  # ~600 KB
    before = writers()
    poster = threading.Thread(
        target=lambda: [sc.post_later(frames.FT_PONG, x) for x in bodies], daemon=True
    )
    poster.start()
    poster.join(30)
    assert not poster.is_alive()  # never waited for the peer to read
    assert writers() > before  # (the socket filled: what it did not take went to a thread)
    got: list = []
    while len(got) < len(bodies):
        more = cc.recv(timeout=30)
        assert more, f"{len(got)} of {len(bodies)} bodies came, then nothing for 30 s"
        got += [bytes(f.payload) for f in more]
    assert got == bodies
    cc.close()
    sc.close()


def test_post_later_that_cannot_finish_its_frame_breaks_the_channel(monkeypatch):
    # The socket took part of a frame, and no thread can be started for the rest: the
    # frame stays cut, so the channel is broken at once (nothing may follow it).
    cc, sc = small_buffer_pair()

    def no_thread(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        for _ in range(200):
            sc.post_later(frames.FT_PONG, os.urandom(3000))
    assert sc.closed
    with pytest.raises(ConnectionLost):
        sc.post(frames.FT_PONG, b"next", True)
    monkeypatch.undo()
    with pytest.raises((IntegrityError, ConnectionLost)):  # the peer: the stream ends
        while True:  # (inside the cut frame: IntegrityError)
            assert cc.recv(timeout=30)
    cc.close()
    sc.close()


def _task_field(tid: int, name: str) -> str:
    with open(f"/proc/self/task/{tid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split()[1]
    raise AssertionError(f"no {name} for thread {tid}")


def test_a_server_waiting_on_a_unix_socket_is_not_woken_when_its_peer_reads():
    # Linux wakes a reader blocked in recv on a Unix socket whenever the peer reads what
    # it sent; the server's end waits in a poll for input instead (one switch a call).
    cc, sc = channel_pair()
    sc.send(frames.FT_RESPONSE, b"reply")  # the server's bytes wait on the client's side
    got: list = []
    t = threading.Thread(target=lambda: got.append(sc.recv_frames()), daemon=True)
    t.start()
    tid = t.native_id
    deadline = time.monotonic() + 10
    while _task_field(tid, "State") != "S":  # asleep in its wait for a request
        assert time.monotonic() < deadline, "the reading thread never waited"
        time.sleep(0.01)
    time.sleep(0.05)
    before = int(_task_field(tid, "voluntary_ctxt_switches"))
    assert [bytes(f.payload) for f in cc.recv(timeout=10)] == [b"reply"]
    time.sleep(0.2)
    woken = int(_task_field(tid, "voluntary_ctxt_switches")) - before
    cc.send(frames.FT_REQUEST, b"call")
    t.join(10)
    assert [bytes(f.payload) for f in got[0]] == [b"call"]
    assert woken == 0, f"the server's reading thread was woken {woken} time(s) for nothing"
    cc.close()
    sc.close()
