"""Start-up benchmark: one command, one table, the bare interpreter and EasyCluster 0.22.3
measured in the same run.

    .venv/bin/python bench/startup.py [--repeat N] [--fleet N] [--fleet-repeat N]
                                      [--no-peer] [--peer-venv DIR] [--imports]

Rows: bare ``python -c pass`` (the floor), ``import easycluster`` (alone, and with
``easycluster.Client``), ``easycluster --version`` (``python -m`` and the console script),
``easycluster -S -p 0`` from spawn to its "serving on" line, the ssh bootstrap of the
server role over local pipes (stage 0 and 1, no ssh) up to the server's handshake hello,
the bootstrap payload per role, ``--fleet`` servers spawned at once until all listen,
then a Client connected to each with one call, and (installed-like and 0.22.3) ``--fleet``
``spawn_local()`` calls one after another, then one call on each (ours: the zygote
starts with the first; neither waits for its servers before their first call, ours
started by the zygote, 0.22.3's forks of the master). Each timed row is the median of
``--repeat`` runs, the rows taken in turn in each round; one warm-up round comes first,
so bytecode caches are warm (PYTHONDONTWRITEBYTECODE is removed from the children's
environment: a user's install has its caches).

Three setups, all on this interpreter: the project venv (an editable install, whose
finder ``site`` sets up on every start, bare ``python -c pass`` included); installed-like:
a plain venv (no packages, no ``.pth``) with PYTHONPATH at the work tree and the project
venv's site-packages, so the package imports as from a normal install; and EasyCluster
0.22.3 from PyPI in ``bench/.venv022`` (or ``--peer-venv DIR``), made on first use
(``--no-peer`` skips it; without a network its rows say why). "vs bare" is over the bare
row of the same setup, "vs 0.22.3" the ratio to the peer's row of the same kind. The CPU
column (user + system of the processes timed) is steadier than wall time on a busy
machine. Every child runs in an empty temporary directory, so ``python -m easycluster``
finds the installed package, not the work tree. Servers run in sessions of their own and
are killed with their process group; a server that does not listen within 30 s is
reported, not waited for.

``--imports`` prints, under the table, the ten largest own import times
(``-X importtime``, median of 6 runs, site's own imports left out) of ``import
easycluster``, of a client, and of ``easycluster -S``. Modules loaded with
``importlib.import_module`` (the package's lazy names, the CLI's subcommands) are missing
from that listing, though the imports they make are there.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import select
import selectors
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_VENV = os.path.join(ROOT, "bench", ".venv022")
PEER = "easycluster==0.22.3"
HOST = "127.0.0.1"
OURS_READY = rb"serving on \S+:(\d+)"  # easycluster -S, on stderr
PEER_READY = rb"Listening on port (\d+)"  # 0.22's server, on stdout
TIMEOUT = 30.0  # seconds any one child may take


def child_env(**extra: str) -> Dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "PYTHONDONTWRITEBYTECODE",
            "PYTHONPATH",
            "PYTHONPROFILEIMPORTTIME",
            "PYTHONSTARTUP",
            "PYTHONHOME",
        )
    }
    env["PYTHONUNBUFFERED"] = "1"  # 0.22 prints its ready line on stdout
    env.update(extra)
    return env


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s process group (it was started in a session of its own), reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def wait_lines(
    fds: Sequence[int], pattern: bytes, timeout: float
) -> List[Tuple[Optional[float], bytes]]:
    """For each fd: (perf_counter when a line matching ``pattern`` arrived, that line), or
    (None, what was read) if the fd closed or ``timeout`` passed first."""
    rx = re.compile(pattern)
    out: List[Tuple[Optional[float], bytes]] = [(None, b"")] * len(fds)
    bufs = [b""] * len(fds)
    sel = selectors.DefaultSelector()
    for i, fd in enumerate(fds):
        sel.register(fd, selectors.EVENT_READ, i)
    deadline = time.monotonic() + timeout
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in sel.select(left):
                i = key.data
                chunk = os.read(key.fd, 65536)
                bufs[i] += chunk
                for line in bufs[i].splitlines(keepends=True):
                    if line.endswith(b"\n") and rx.search(line):
                        out[i] = (time.perf_counter(), line)
                        break
                if out[i][0] is not None or not chunk:
                    sel.unregister(key.fd)
    finally:
        sel.close()
    return [o if o[0] is not None else (None, bufs[i][-300:]) for i, o in enumerate(out)]


# -- the timed actions: each returns seconds or raises RuntimeError ---------------------


def run_once(argv: Sequence[str], env: Dict[str, str], cwd: str) -> float:
    t = time.perf_counter()
    try:
        p = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {TIMEOUT:.0f} s")
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: " + p.stderr.decode(errors="replace")[-200:])
    return dt


def until_line(
    argv: Sequence[str], pattern: bytes, on_stdout: bool, env: Dict[str, str], cwd: str
) -> float:
    """Seconds from spawning ``argv`` to its first line matching ``pattern``."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE if on_stdout else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if on_stdout else subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stream = proc.stdout if on_stdout else proc.stderr
        assert stream is not None
        when, line = wait_lines([stream.fileno()], pattern, TIMEOUT)[0]
        if when is None:
            raise RuntimeError("no ready line; output: " + line.decode(errors="replace"))
        return when - t
    finally:
        kill_group(proc)
        for s in (proc.stdout, proc.stderr):
            if s:
                s.close()


def bootstrap_once(python: str, role: str, env: Dict[str, str], cwd: str) -> float:
    """The ssh bootstrap without ssh: stage 0 started locally, written to its stdin what
    ``launch.ssh`` writes (stage 1, the ``role`` payload's compiled code, a session key;
    ``python`` must be this interpreter's version, so stage 1 needs no source);
    seconds until the server's handshake hello."""
    from easycluster.launch import payload
    from easycluster.protocol import boot, handshake
    from easycluster.remote.stage1 import READY

    script, code, source = payload.unbundle(payload.payload(role))
    data = script + (code or source)
    argv = shlex.split(boot.stage0_command(python, len(script)))
    t = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None

    def feed() -> None:
        try:
            proc.stdin.write(data + os.urandom(boot.KEY_SIZE))  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        except OSError:
            pass  # the child died: reported below

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        got = b""
        deadline = time.monotonic() + TIMEOUT
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout.fileno(), selectors.EVENT_READ)
        try:
            while True:
                end = boot.greeting_end(got) if boot.parse_greeting(got) else None
                hello = None if end is None or not got[end:].startswith(READY) else end + len(READY)
                if hello is not None and len(got) - hello >= handshake.SERVER_HELLO_SIZE:
                    return time.perf_counter() - t
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise RuntimeError("timed out waiting for the server hello")
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    err = proc.stderr.read().decode(errors="replace")[-300:]
                    raise RuntimeError(f"stage 1 exited before its hello: {err}")
                got += chunk
        finally:
            sel.close()
    finally:
        kill_group(proc)
        writer.join(5)
        for s in (proc.stdin, proc.stdout, proc.stderr):
            try:
                s.close()
            except OSError:
                pass


# -- a fleet of servers, driven from the implementation's own interpreter ---------------


def free_ports(n: int) -> List[int]:
    """``n`` loopback ports free right now (0.22's server cannot report a port it picked)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def fleet_driver(argv: List[str]) -> int:
    """Run by the measured implementation's interpreter: start ``n`` servers at once, wait
    until all listen, then connect a Client to each and make one call. Prints
    ``listening connected`` (seconds from the first spawn) or ``FAIL reason``."""
    n, keyfile, kind = int(argv[0]), argv[1], argv[2]
    import easycluster

    peer = kind == "peer"
    ports = free_ports(n) if peer else [0] * n
    procs: List[subprocess.Popen] = []
    clients = []
    try:
        t = time.perf_counter()
        for port in ports:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "easycluster",
                        "-S",
                        "-k",
                        keyfile,
                        "-b",
                        HOST,
                        "-p",
                        str(port),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE if peer else subprocess.DEVNULL,
                    stderr=subprocess.STDOUT if peer else subprocess.PIPE,
                )
            )
        fds = [(p.stdout if peer else p.stderr).fileno() for p in procs]  # type: ignore
        seen = wait_lines(fds, PEER_READY if peer else OURS_READY, TIMEOUT)
        bad = [line for when, line in seen if when is None]
        if bad:
            print(
                f"FAIL {len(bad)} of {n} servers did not listen: "
                + bad[0].decode(errors="replace").strip()[-200:]
            )
            return 1
        listening = max(when for when, _ in seen if when is not None) - t
        key = easycluster.read_key_file(keyfile)
        for (_, line), port in zip(seen, ports):
            m = re.search(PEER_READY if peer else OURS_READY, line)
            c = easycluster.Client(key, HOST, port or int(m.group(1)))  # type: ignore
            clients.append(c)
        if not _call_each(clients):
            return 1
        print(f"{listening} {time.perf_counter() - t}")
        return 0
    except Exception as e:  # noqa: BLE001 - reported to the parent, which keeps going
        print(f"FAIL {type(e).__name__}: {e}")
        return 1
    finally:
        _close_all(clients)
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def local_driver(argv: List[str]) -> int:
    """Run by the measured implementation's interpreter: ``spawn_local()`` ``n`` times,
    then one call on each. Prints ``spawned called`` (seconds from the first spawn, the
    zygote's start included for ours: it answers the calls) or ``FAIL reason``."""
    n = int(argv[0])
    from easycluster.server import spawn_local

    clients = []
    try:
        t = time.perf_counter()
        for _ in range(n):
            clients.append(spawn_local())
        spawned = time.perf_counter() - t
        if not _call_each(clients):
            return 1
        print(f"{spawned} {time.perf_counter() - t}")
        return 0
    except Exception as e:  # noqa: BLE001 - reported to the parent, which keeps going
        print(f"FAIL {type(e).__name__}: {e}")
        return 1
    finally:
        _close_all(clients)


def _call_each(clients: List[Any]) -> bool:
    """One call on each client; False (and a FAIL line) if one answers wrongly."""
    for c in clients:
        if c.eval("6 * 7") != 42:
            print("FAIL a call returned a wrong value")
            return False
    return True


def _close_all(clients: List[Any]) -> None:
    for c in clients:
        try:
            c.close()
        except Exception:  # noqa: BLE001 - closing the rest matters more
            pass


def fleet_once(
    python: str, n: int, keyfile: str, kind: str, env: Dict[str, str], cwd: str
) -> Tuple[float, float]:
    """(all listening, all connected and called) in seconds, from the driver's report
    (``kind`` "local": spawn_local, see ``local_driver``)."""
    how = (
        ["--local-driver", str(n)] if kind == "local" else ["--fleet-driver", str(n), keyfile, kind]
    )
    proc = subprocess.Popen(
        [python, os.path.abspath(__file__), *how],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )  # the servers share its group
    try:
        out, _ = proc.communicate(timeout=3 * TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the fleet driver timed out after {3 * TIMEOUT:.0f} s")
    finally:
        kill_group(proc)  # whatever the driver left behind
    words = out.decode(errors="replace").strip().splitlines()[-1:] or ["FAIL no output"]
    if words[0].startswith("FAIL") or proc.returncode:
        raise RuntimeError(words[0].removeprefix("FAIL "))
    a, b = words[0].split()
    return float(a), float(b)


# -- rows -----------------------------------------------------------------------------

# kind -> (target, most seconds over the bare row or None, most times the 0.22.3 row)
TARGETS = {
    "import": ("≤ +20 ms", 0.020, 0.0),
    "serve": ("≤ +60 ms", 0.060, 0.0),
    "fleet": ("≤ 0.22.3", None, 1.0),
    "fleet+": ("≤ 0.22.3", None, 1.0),
    "fleet-local": ("≤ 2 × 0.22.3", None, 2.0),
}


class Row:
    """One measure of one setup: ``action()`` runs once per round (the fleets are run
    apart); compared with the ``bare`` row of its setup and the peer's row of its kind."""

    def __init__(
        self,
        setup: str,
        kind: str,
        name: str,
        action: Optional[Callable[[], float]] = None,
        error: str = "",
    ):
        self.setup, self.kind, self.name, self.action = setup, kind, name, action
        self.error = error
        self.samples: List[float] = []
        self.cpu: List[float] = []  # user + system seconds of the processes it ran

    def run(self, keep: bool) -> None:
        if self.action is None or self.error:
            return
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            value = self.action()
        except (RuntimeError, OSError) as e:
            self.error = str(e)
            return
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if keep:
            self.samples.append(value)
            self.cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)

    @property
    def median(self) -> Optional[float]:
        return statistics.median(self.samples) if self.samples else None


class Setup:
    """An interpreter and the environment its children get."""

    def __init__(
        self,
        key: str,
        title: str,
        python: Optional[str],
        env: Dict[str, str],
        keyfile: str,
        error: str = "",
    ):
        self.key, self.title, self.python, self.env = key, title, python, env
        self.keyfile, self.error = keyfile, error


def ensure_peer(log: Callable[[str], None], venv: str = PEER_VENV) -> Tuple[Optional[str], str]:
    """(the 0.22.3 venv's python, "") or (None, why not); ``venv`` is made if missing."""
    python = os.path.join(venv, "bin", "python")
    check = [python, "-c", "import easycluster, sys; print(sys.version.split()[0])"]
    try:
        if not os.path.exists(python):
            log(f"creating {venv} with {PEER} ...")
            subprocess.run(
                [sys.executable, "-m", "venv", venv],
                check=True,
                capture_output=True,
                timeout=120,
            )
            subprocess.run(
                [python, "-m", "pip", "install", "-q", PEER],
                check=True,
                capture_output=True,
                timeout=300,
                env=child_env(),
            )
        version = subprocess.run(
            check,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=child_env(),
            cwd=tempfile.gettempdir(),
        )
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", b"") or b""
        text = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
        return None, f"{PEER} could not be installed ({type(e).__name__}: {text.strip()[-120:]})"
    ours = sys.version.split()[0]
    if version.returncode != 0:
        return None, f"{PEER} does not import: {version.stderr.strip()[-120:]}"
    if version.stdout.strip() != ours:
        return None, (
            f"{venv} runs Python {version.stdout.strip()}, not {ours}: remove it to rebuild"
        )
    return python, ""


def plain_venv(work: str) -> Tuple[Optional[str], str]:
    """A venv with no packages and no .pth files: with PYTHONPATH at the work tree and the
    project venv's site-packages, the package imports as from a normal install."""
    path = os.path.join(work, "plain")
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", path],
            check=True,
            capture_output=True,
            timeout=TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"cannot make a plain venv: {e}"
    return os.path.join(path, "bin", "python"), ""


def payload_rows() -> List[Tuple[str, str]]:
    from easycluster.launch import payload

    out = []
    for role in payload.ROLES:
        sources = payload.shipped_sources(role)
        bundle = payload.payload(role)
        raw = sum(len(src.encode()) for _, src in sources.values())
        sent = payload.sent_size(bundle)  # stage 1 and the compiled code, compressed
        lines = sum(src.count("\n") for _, src in sources.values())
        cp = sum(
            src.count("\n")
            for name, (_, src) in sources.items()
            if name.split(".")[0] == "cloudpickle"
        )
        out.append(
            (
                f"bootstrap payload, role `{role}`",
                f"{len(sources)} modules, {lines:,} lines ({cp:,} of them cloudpickle): "
                f"{raw / 1024:.0f} KiB of source, {sent / 1024:.1f} KiB sent (stage 1 and "
                f"compiled code, zlib; {len(bundle) / 1024:.1f} KiB with the source fallback)",
            )
        )
    return out


def build_rows(setups: List[Setup], work: str, fleet: int) -> List[Row]:
    return [r for st in setups for r in setup_rows(st, work, fleet)]


def setup_rows(st: Setup, work: str, fleet: int) -> List[Row]:
    py, env = st.python or "", st.env

    def cmd(*argv: str) -> Callable[[], float]:
        return lambda: run_once([py, *argv], env, work)

    peer = st.key == "peer"
    ready = PEER_READY if peer else OURS_READY
    port = str(free_ports(1)[0]) if peer else "0"
    serve = [py, "-m", "easycluster", "-S", "-k", st.keyfile, "-b", HOST, "-p", port]
    rows = [
        Row(st.key, "bare", "bare `python -c pass`", cmd("-c", "pass")),
        Row(st.key, "import", '`python -c "import easycluster"`', cmd("-c", "import easycluster")),
    ]
    if st.key == "venv":
        script = os.path.join(os.path.dirname(py), "easycluster")
        rows += [
            Row(
                st.key,
                "client",
                "`import easycluster; easycluster.Client`",
                cmd("-c", "import easycluster; easycluster.Client"),
            ),
            Row(
                st.key,
                "version",
                "`python -m easycluster --version`",
                cmd("-m", "easycluster", "--version"),
            ),
            Row(
                st.key,
                "script",
                "`easycluster --version` (the console script)",
                lambda: run_once([script, "--version"], env, work),
            ),
        ]
    name = (
        '`python -m easycluster -S` to "Listening"'
        if peer
        else '`python -m easycluster -S -p 0` to "serving on"'
    )
    rows.append(Row(st.key, "serve", name, lambda: until_line(serve, ready, peer, env, work)))
    if st.key == "venv":
        rows.append(
            Row(
                st.key,
                "bootstrap",
                "ssh bootstrap without ssh, role `server`, to the server's hello",
                lambda: bootstrap_once(py, "server", env, work),
            )
        )
    if fleet:
        rows += [
            Row(st.key, "fleet", f"{fleet} × `-S` started at once, until all listen"),
            Row(st.key, "fleet+", f"{fleet} × `-S`, + a Client to each and one call"),
        ]
        if st.key != "venv":
            rows += [
                Row(st.key, "fleet-local", f"{fleet} × `spawn_local()` (one after another)"),
                Row(st.key, "fleet-local+", f"{fleet} × `spawn_local()`, + one call on each"),
            ]
    for r in rows:
        r.error = st.error
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=20, help="runs per timed row (20)")
    ap.add_argument("--fleet", type=int, default=50, help="servers started at once (50; 0: none)")
    ap.add_argument("--fleet-repeat", type=int, default=3, help="fleet runs (3)")
    ap.add_argument("--no-peer", action="store_true", help=f"skip {PEER}")
    ap.add_argument(
        "--peer-venv",
        metavar="DIR",
        default=PEER_VENV,
        help=f"the venv holding {PEER} (made there if missing; default bench/.venv022)",
    )
    ap.add_argument("--imports", action="store_true", help="print the top import costs too")
    args = ap.parse_args()
    sys.path.insert(0, ROOT)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    peer, peer_why = (
        (None, "skipped (--no-peer)") if args.no_peer else ensure_peer(log, args.peer_venv)
    )
    with tempfile.TemporaryDirectory(prefix="ec-startup-") as work:
        ours_key = os.path.join(work, "ours.key")
        peer_key = os.path.join(work, "peer.key")
        for path, size in ((ours_key, 32), (peer_key, 16)):  # 0.22's key is 16 bytes (MD5)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, os.urandom(size).hex().encode() + b"\n")
            os.close(fd)
        plain, plain_why = plain_venv(work)
        site = sysconfig.get_paths()["purelib"]
        setups = [
            Setup(
                "venv", "the project venv (editable install)", sys.executable, child_env(), ours_key
            ),
            Setup(
                "plain",
                "installed-like: a plain venv, PYTHONPATH = work tree + the "
                "project venv's site-packages (no editable finder)",
                plain,
                child_env(PYTHONPATH=os.pathsep.join([ROOT, site])),
                ours_key,
                plain_why,
            ),
            Setup("peer", f"{PEER} ({args.peer_venv})", peer, child_env(), peer_key, peer_why),
        ]
        rows = build_rows(setups, work, args.fleet)
        log(f"timing {len(rows)} rows, {args.repeat} rounds after a warm-up ...")
        for i in range(args.repeat + 1):
            for r in rows:
                r.run(keep=i > 0)
        for st in setups:
            fleet_rows = [r for r in rows if r.setup == st.key and r.kind.startswith("fleet")]
            if not fleet_rows or st.error or st.python is None:
                continue
            log(f"{st.key}: {args.fleet} servers at once, {args.fleet_repeat} runs ...")
            for _ in range(args.fleet_repeat):
                for pair, kind in ((fleet_rows[:2], st.key), (fleet_rows[2:], "local")):
                    if not pair or pair[0].error:
                        continue
                    try:
                        a, b = fleet_once(st.python, args.fleet, st.keyfile, kind, st.env, work)
                    except RuntimeError as e:
                        pair[0].error = pair[1].error = str(e)
                        continue
                    pair[0].samples.append(a)
                    pair[1].samples.append(b)
        print_table(setups, rows, args)
        if args.imports:
            print_imports(ours_key, work)
    return 0


def fmt_ms(s: Optional[float]) -> str:
    return "—" if s is None else (f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s")


def print_table(setups: List[Setup], rows: List[Row], args: argparse.Namespace) -> None:
    find = {(r.setup, r.kind): r for r in rows}
    print(
        f"Start-up, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; median of "
        f"{args.repeat} runs ({args.fleet_repeat} for the fleets). CPU: user + system "
        "time of the processes timed (steadier than wall time on a busy machine). vs bare: "
        "minus the bare row of the same setup.\n"
    )
    print("| measure | median | CPU | vs bare | vs 0.22.3 | target |")
    print("|---|---:|---:|---:|---:|---|")
    for st in setups:
        print(f"| **{st.title}** | | | | | |")
        for r in (r for r in rows if r.setup == st.key):
            m = r.median
            base = find.get((r.setup, "bare"))
            b = base.median if base is not None and base is not r else None
            p = find.get(("peer", r.kind)) if r.setup != "peer" else None
            ratio = m / p.median if m and p is not None and p.median else None
            vs_bare = ""
            if m and b and not r.kind.startswith("fleet"):
                vs_bare = f"{(m - b) * 1000:+.1f} ms, ×{m / b:.2f}"
            vs_peer = f"×{ratio:.2f}" if ratio else ""
            target, limit, most = TARGETS.get(r.kind, ("", None, 0.0))
            target = target if r.setup != "peer" else ""
            ok = None
            if target and m:
                ok = (
                    ((ratio <= most) if ratio else None)
                    if limit is None
                    else ((m - b) <= limit if b else None)
                )
            target += "" if ok is None else (" ok" if ok else " **missed**")
            value = fmt_ms(m)
            if r.error:
                value = ("not measured: " if st.error else "failed: ") + r.error.replace(
                    "\n", " "
                ).replace("|", "/")[:150]
            cpu = fmt_ms(statistics.median(r.cpu)) if r.cpu and not r.error else ""
            print(f"| {r.name} | {value} | {cpu} | {vs_bare} | {vs_peer} | {target} |")
            if r.kind == "bootstrap":
                for name, text in payload_rows():
                    print(f"| {name} | {text} | | | | |")
    ours, plain = find.get(("venv", "bare")), find.get(("plain", "bare"))
    if ours and plain and ours.median and plain.median:
        d_cpu = statistics.median(ours.cpu) - statistics.median(plain.cpu)
        print(
            f"\nThe editable install's finder (site imports pathlib & co. to install it) "
            f"costs {(ours.median - plain.median) * 1000:+.1f} ms ({d_cpu * 1000:+.1f} ms CPU) "
            "on every start of the project venv's interpreter: its bare row minus the "
            "plain venv's."
        )


def print_imports(keyfile: str, work: str) -> None:
    py = sys.executable
    cases = [
        ('`python -c "import easycluster"`', [py, "-c", "import easycluster"], None),
        (
            "`import easycluster; easycluster.Client`",
            [py, "-c", "import easycluster; easycluster.Client"],
            None,
        ),
        (
            "`easycluster -S -p 0` until listening",
            [py, "-m", "easycluster", "-S", "-k", keyfile, "-b", HOST, "-p", "0"],
            OURS_READY,
        ),
    ]
    for title, argv, ready in cases:
        selfs: Dict[str, List[int]] = {}
        for _ in range(6):
            own = import_times(argv, ready, work)
            for name, us in own.items():
                selfs.setdefault(name, []).append(us)
        med = {k: statistics.median(v) for k, v in selfs.items() if len(v) >= 3}
        top = sorted(med.items(), key=lambda kv: -kv[1])[:10]
        print(
            f"\nTop 10 own import times, {title}: {len(med)} modules, "
            f"{sum(med.values()) / 1000:.1f} ms in all (under -X importtime)\n"
        )
        print("| module | own ms |\n|---|---:|")
        for name, own_us in top:
            print(f"| {name} | {own_us / 1000:.2f} |")


def import_times(argv: List[str], ready: Optional[bytes], work: str) -> Dict[str, int]:
    """Own import time in µs of each module imported after ``site``, one run."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=work,
        start_new_session=True,
        env=child_env(PYTHONPROFILEIMPORTTIME="1"),
    )
    assert proc.stderr is not None
    text = b""
    try:
        deadline = time.monotonic() + TIMEOUT
        fd = proc.stderr.fileno()
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            chunk = os.read(fd, 65536) if r else b""
            text += chunk
            if not chunk or (ready and re.search(ready, text)):
                break
    finally:
        kill_group(proc)
        proc.stderr.close()
    out: Dict[str, int] = {}
    after_site = False
    for line in text.decode(errors="replace").splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \| ( *)(\S+)", line)
        if m and after_site:
            out[m.group(3)] = out.get(m.group(3), 0) + int(m.group(1))
        elif m and m.group(3) == "site" and not m.group(2):
            after_site = True
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fleet-driver"]:
        sys.exit(fleet_driver(sys.argv[2:]))
    if sys.argv[1:2] == ["--local-driver"]:
        sys.exit(local_driver(sys.argv[2:]))
    sys.exit(main())
