"""A loss of a client's connection, ended on another thread (a reader, the standby)
while the client reconnects, must neither leave the new connection's socket open nor
undo the reconnect.

``Client._shutdown`` used to take the channel with a read and a write
(``channel, self._channel = self._channel, None``): when ``attach`` set the new channel
between the two, the write put None over it. The hello then failed ("not connected"),
nothing closed that channel, and its local server's socket was left to the garbage
collector (an unclosed-socket ResourceWarning at some later test). The test stops the
losing thread between its read and its write, with events: real local servers, no
sleeps.
"""

from __future__ import annotations

import sys
import threading

import easycluster
from easycluster import ConnectionLost
from easycluster.server import spawn_local


class _Race:
    def __init__(self, loser: threading.Thread) -> None:
        self.loser = loser
        self.paused = threading.Event()  # the loser has read the channel in _shutdown
        self.release = threading.Event()  # the reconnect has gone as far as it can
        self.stored = threading.Event()  # the loser has written the channel back
        self.made: list = []  # every channel the client was given


def _caller() -> str:
    """The name of the package function that reads or writes (past this module's hooks)."""
    frame = sys._getframe(2)
    while frame.f_code.co_filename == __file__:
        frame = frame.f_back
    return frame.f_code.co_name


class RacingClient(easycluster.Client):
    """A Client whose ``_channel`` reads and writes the test can stop (only while
    ``_race`` is set). A fake hook on a real client: no other way stops a thread in
    the middle of one line on demand."""

    @property  # type: ignore[override]
    def _channel(self):
        d = object.__getattribute__(self, "__dict__")
        value = d.get("_ch")
        race = d.get("_race")
        if (
            race is not None
            and threading.current_thread() is race.loser
            and _caller() == "_shutdown"
            and not race.paused.is_set()
        ):
            race.paused.set()  # read, not yet written back: the reconnect goes on now
            race.release.wait(30)
        return value

    @_channel.setter
    def _channel(self, value):
        d = object.__getattribute__(self, "__dict__")
        d["_ch"] = value
        race = d.get("_race")
        if race is None:
            return
        if threading.current_thread() is race.loser:
            if value is None:
                race.stored.set()
        elif value is not None:  # attach gives the client its new channel
            race.made.append(value)
            race.release.set()
            race.stored.wait(30)  # the loser's write comes after this one, if it can

    def __getattribute__(self, name):
        if name == "_channel_lock":  # (the fix: the read and the write are one step)
            race = object.__getattribute__(self, "__dict__").get("_race")
            if race is not None and threading.current_thread() is not race.loser:
                race.release.set()  # the loser holds it: let it finish its step
        return object.__getattribute__(self, name)


def test_a_loss_ended_on_another_thread_during_a_reconnect_leaks_nothing():
    client = spawn_local(RacingClient)
    old = client._channel
    loser = threading.Thread(target=client._lost, args=(old, ConnectionLost("lost (test)")))
    race = _Race(loser)
    race.made.append(old)
    client._race = race
    try:
        loser.start()
        assert race.paused.wait(30)
        try:
            client.reconnect()
            reconnected = True
        except ConnectionLost:
            reconnected = False
        loser.join(30)
        assert not loser.is_alive()
        client._race = None
        live = client._channel
        left_open = [ch for ch in race.made if ch is not live and ch.sock.fileno() != -1]
        try:
            assert not left_open, "a channel the client let go of is still open"
            assert reconnected and live is not None and live is not old
            assert client.os.getpid() == client.process.pid
        finally:
            for ch in left_open:
                ch.close()
    finally:
        client._race = None
        client.close()


def test_attach_to_a_connected_client_closes_the_channel_it_was_given():
    """A second connection given to a connected client (two reconnects at once, or a
    script's mistake) is refused, and closed: kept by nobody, its server would run on."""
    from easycluster.launch.local import start_local

    client = spawn_local()
    channel, proc = start_local(client.wire_options())
    closed = []
    try:
        try:
            client.attach(channel, "second", closer=lambda: closed.append(True))
        except easycluster.ConfigError as e:
            assert "already connected" in str(e)
        else:
            raise AssertionError("attach to a connected client was accepted")
        assert channel.closed and closed == [True]
        proc.wait(timeout=10)  # its server ended with the channel
        assert client.os.getpid() == client.server_pid  # the first connection serves on
    finally:
        channel.close()
        client.close()


def test_closing_a_client_that_never_connected_does_nothing():
    client = easycluster.Client()
    client.close()
    client.close()
    assert not client.connected
