"""What the readers do when something goes wrong beside a reply: a fan-out that times
out forgets what it sent, a Ctrl-C is the caller's even once a reply is in, a
``remote_output`` sink that raises costs no reply, the standby thread outlives an error
on one client, and a Ctrl-C while waiting for the reader role leaves no count behind."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

import easycluster
from easycluster import CallTimeout, Client, call_multi, define_common
from easycluster.client import reader as readers
from easycluster.client.parallel import call_each
from easycluster.server import spawn_local

define_common("""
import time as _rf_time

def rf_nap(t, f=None):
    _rf_time.sleep(t)
    return 1

def rf_echo(v):
    return v

def rf_say(v):
    print("said", v)
    return v
""")


def test_a_timed_out_fan_out_forgets_what_it_sent():
    plain = spawn_local()
    threaded = spawn_local(easycluster.ThreadedClient)
    try:
        for clients, extra in (([plain], None), ([plain], lambda x: x), ([threaded], None)):
            # (None: posted; a lambda: pickled per server; a ThreadedClient's Response)
            got = call_multi(clients, "rf_nap", 2, extra, call_timeout=0.2, return_exceptions=True)
            assert isinstance(got[0], CallTimeout)
            assert clients[0]._reader.pending == {}
    finally:
        plain.close()
        threaded.close()


class InterruptedAfterReply(Client):
    """Ctrl-C arriving just after a reply was stored (before the wait returned)."""

    fire = False

    def _complete(self, main, bufs):
        Client._complete(self, main, bufs)
        if self.fire:
            self.fire = False
            raise KeyboardInterrupt


def test_ctrl_c_after_a_reply_came_is_the_callers():
    cs = [spawn_local(), spawn_local(InterruptedAfterReply), spawn_local()]
    try:
        for c in cs:
            c.rf_echo(0)
        for run in (
            lambda: call_each(cs, "rf_echo", ("v",), {}),
            lambda: call_multi(cs, "rf_echo", "v", return_exceptions=True),
        ):
            cs[1].fire = True
            with pytest.raises(KeyboardInterrupt):
                run()
        assert call_multi(cs, "rf_echo", "w") == ["w"] * 3  # (and the clients go on)
    finally:
        for c in cs:
            c.close()


def test_a_remote_output_sink_that_raises_costs_no_reply(capsys):
    said = []

    def sink(host, stream, text):
        said.append(text)
        if len(said) == 1:
            raise RuntimeError("sink failed once")

    a = spawn_local(remote_output=sink)
    try:
        assert call_multi([a], "rf_say", 1, call_timeout=5) == [1]
        assert a._reader.pending == {}
        assert a.rf_say(2) == 2
        assert "".join(said) == "said 1\nsaid 2\n"
    finally:
        a.close()
    err = capsys.readouterr().err
    assert "exception in the remote output of local" in err and "sink failed once" in err


def test_a_ctrl_c_while_output_prints_leaves_the_reply_read_with_it():
    calls = []

    def sink(host, stream, text):
        calls.append(text)
        if len(calls) == 1:
            raise KeyboardInterrupt  # (Ctrl-C while the output prints)

    a = spawn_local(remote_output=sink)
    try:
        with pytest.raises(KeyboardInterrupt):
            call_multi([a], "rf_say", 1, call_timeout=5)
        assert a.rf_echo(2) == 2
        assert a._reader.pending == {}  # the first reply was handled too, not dropped
    finally:
        a.close()


class FailsOnceAfterReply(Client):
    """A client whose handling of one reply raises (a bug, or anything unforeseen) on
    whichever thread reads it."""

    fire = False

    def _complete(self, main, bufs):
        Client._complete(self, main, bufs)
        if self.fire:
            self.fire = False
            raise RuntimeError("failed once after the reply")


def test_the_standby_thread_outlives_an_error_on_one_client(capsys):
    a = spawn_local(FailsOnceAfterReply)
    b = spawn_local()
    try:
        a.rf_echo(0)
        a.fire = True
        r = a.rf_echo(1, nonblocking=True)  # waited on without reading: the standby reads
        done, _ = concurrent.futures.wait([r], timeout=5)
        assert done and r.result() == 1
        assert readers.STANDBY._thread is not None and readers.STANDBY._thread.is_alive()
        r2 = b.rf_echo(2, nonblocking=True)
        done, _ = concurrent.futures.wait([r2], timeout=5)
        assert done and r2.result() == 2
    finally:
        a.close()
        b.close()
    assert "failed once after the reply" in capsys.readouterr().err


def test_ctrl_c_while_waiting_for_the_reader_role_leaves_no_waiter_counted():
    reader = readers.InlineReader(lambda got: None, lambda channel, e: None)
    reader._reading = True  # another thread reads

    class Interrupted(threading.Condition):
        def wait(self, timeout=None):
            raise KeyboardInterrupt

    reader._cond = Interrupted(reader._lock)
    with pytest.raises(KeyboardInterrupt):
        reader._take_reader(None)
    assert reader._nwait == 0  # (else the standby would never read for it again)


def _close_while_a_send_is_stuck(client) -> None:
    """Stop the server (it reads no more), have a thread send it 64 MiB (stuck once the
    buffers are full), then close: close returns, and the stuck send ends with
    ConnectionLost."""
    import os
    import signal
    import time

    pid = client.eval("__import__('os').getpid()")
    os.kill(pid, signal.SIGSTOP)
    try:
        ended = []

        def big() -> None:
            try:
                client.rf_echo(b"x" * (64 << 20))
            except easycluster.ConnectionLost:
                ended.append("ConnectionLost")

        sender = threading.Thread(target=big, daemon=True)
        sender.start()
        deadline = time.monotonic() + 10
        while not client._channel._write_lock.locked() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # (stuck in its write by now)
        closer = threading.Thread(target=client.close, daemon=True)
        closer.start()
        closer.join(20)
        assert not closer.is_alive(), "close() hung behind the stuck send"
        sender.join(20)
        assert ended == ["ConnectionLost"]
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_close_while_a_send_is_stuck_on_a_stopped_local_server():
    _close_while_a_send_is_stuck(spawn_local())


def test_close_while_a_send_is_stuck_on_a_stopped_ssh_server(sshd):
    import sys

    _close_while_a_send_is_stuck(easycluster.Client(**sshd.client_kw(rpython=sys.executable)))
