"""What ``easycluster -S`` loads before its port opens, and where the connection code is
loaded (``bench/startup.py`` times it; these count modules, not seconds). Real server
processes run with ``-X importtime``, whose lines on stderr say what each process
imported, and in which order with respect to the "serving on" line."""

from __future__ import annotations

import os
import re
import signal
import socket

from helpers import ServerProcess

import easycluster

HOST = "127.0.0.1"

# Each costs start-up time and none is needed to open the port: logging (with
# traceback, threading & co.), ipaddress (the allow list, peers' sources), the IDNA
# codec (a str host for getaddrinfo), shutil (argparse's terminal width), dataclasses,
# typing (annotations only), the connection code and what it pulls in (cloudpickle,
# the client stack of the definitions preamble), ctypes (the parent-death signal),
# hashlib (OpenSSL: a key file needs no hashing; see protocol/mac.py), argparse (with
# re, gettext and locale: the usual -S line is read without it, cli/serveargs.py).
NOT_BEFORE_LISTENING = (
    "argparse",
    "logging",
    "ipaddress",
    "encodings.idna",
    "shutil",
    "threading",
    "dataclasses",
    "ctypes",
    "cloudpickle",
    "easycluster.remote.process",
    "easycluster.transport.channel",
    "easycluster.client.client",
    "easycluster.service.systemd",
    "typing",
    "hashlib",
)
IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+\d+ \| ( *)(\S+)")


def imported(lines) -> list:
    """The modules named by ``-X importtime`` lines, in order, but for what ``site``
    imports at every start (the editable install's finder loads ipaddress, say)."""
    found = [(m.group(1), m.group(2)) for m in map(IMPORT_LINE.match, lines) if m]
    after_site = next(
        i + 1 for i, (indent, name) in enumerate(found) if (indent, name) == ("", "site")
    )
    return [name for _, name in found[after_site:]]


def serve_with_importtime(keyfile: str) -> ServerProcess:
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    return ServerProcess("-k", keyfile, "-b", HOST, env=env)


def test_the_port_opens_before_logging_and_the_connection_code_load(keyfile):
    with serve_with_importtime(keyfile) as srv:
        ready = next(i for i, line in enumerate(srv.log) if "serving on" in line)
        before = set(imported(srv.log[:ready]))
        assert "easycluster.service.tcpserver" in before  # (the listing is there)
        assert before.isdisjoint(NOT_BEFORE_LISTENING), before & set(NOT_BEFORE_LISTENING)


def test_connection_processes_inherit_the_connection_code(keyfile, key):
    # The listener loads the connection code once, before its first fork: two
    # connections, one import of it (a child importing it itself would list it again).
    with serve_with_importtime(keyfile) as srv:
        for n in (1, 2):
            with easycluster.Client(key, HOST, srv.port) as c:
                assert c.eval(f"{n} + 1") == n + 1
        srv.stop()
        names = imported(srv.log)
        assert names.count("easycluster.remote.process") == 1
        assert names.count("easycluster.transport.channel") == 1


def test_a_signal_before_any_connection_is_logged_in_the_servers_format(keyfile):
    # Logging is set up when the first work comes: here a SIGHUP and a SIGTERM, with
    # no connection ever made. Their lines carry the server's prefix (a line logged
    # before the setup would come out bare).
    with ServerProcess("-k", keyfile, "-b", HOST) as srv:
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_for(rf"^easycluster\[{srv.proc.pid}\]: reloaded")
        srv.proc.send_signal(signal.SIGTERM)
        srv.wait_for(rf"^easycluster\[{srv.proc.pid}\]: stopped")
        assert srv.proc.wait(10) == 0


def test_at_verbosity_0_probes_and_connections_do_not_load_logging(keyfile, key):
    # Logging is set up just before something is first logged: a port probe and
    # connections served at verbosity 0 log nothing, so the listener never loads it.
    with serve_with_importtime(keyfile) as srv:
        with socket.create_connection((HOST, srv.port)):
            pass  # (a port probe: closed without a byte)
        for n in (1, 2):
            with easycluster.Client(key, HOST, srv.port) as c:
                assert c.eval(f"{n} * 3") == n * 3
        names = imported(srv.log)
        assert "easycluster.remote.process" in names  # (the listing is complete)
        assert "logging" not in names
        srv.proc.send_signal(signal.SIGTERM)  # ("stopped" is a warning: it loads it)
        srv.wait_for(rf"^easycluster\[{srv.proc.pid}\]: stopped")
        assert srv.proc.wait(10) == 0


def test_verbose_lines_come_in_the_servers_format(keyfile, key):
    with ServerProcess("-k", keyfile, "-b", HOST, "-v") as srv:
        with socket.create_connection((HOST, srv.port)) as probe:
            host, port = probe.getsockname()[:2]
        srv.wait_for(
            rf"^easycluster\[{srv.proc.pid}\]: connection from {host}:{port} closed before"
        )
        with easycluster.Client(key, HOST, srv.port) as c:
            assert c.eval("2 + 2") == 4
        srv.wait_for(rf"^easycluster\[{srv.proc.pid}\]: connection from \S+ authenticated")
        assert srv.stop() == 0
