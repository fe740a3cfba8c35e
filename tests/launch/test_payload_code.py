"""The bootstrap bundle: compiled code for this Python's magic number, source as the
fallback, stage 1 run for real (``python -c STAGE0`` on pipes, no ssh), and the disk cache.

Stage 1 is the real one in a real interpreter; the only stand-in is a section tagged with
a magic number no Python has, to make this Python ask for the source (an interpreter of
another bytecode version does the same: tests/integration/test_ssh_payload.py).
"""

from __future__ import annotations

import concurrent.futures
import marshal
import os
import select
import stat
import subprocess
import sys
import time
import types
import zlib

import pytest

from easycluster.launch import payload
from easycluster.protocol import boot, handshake
from easycluster.remote import stage1

OTHER_MAGIC = b"\x00\x01\r\n"  # no Python's


def _modules(section: bytes):
    tag, size = section[:4], int.from_bytes(section[4:8], "big")
    assert len(section) == 8 + size
    return tag, marshal.loads(zlib.decompress(section[8:]))


def test_bundle_holds_code_for_this_magic_and_the_source():
    script, code, source = payload.unbundle(payload.payload())
    code_tag, compiled = _modules(code)
    source_tag, sources = _modules(source)
    assert code_tag == stage1.python_magic() == __import__("importlib.util").util.MAGIC_NUMBER
    assert source_tag == stage1.SOURCE_TAG
    assert set(compiled) == set(sources) == set(payload.shipped_sources())
    for name, (is_package, body) in compiled.items():
        assert sources[name][0] == is_package
        obj = marshal.loads(body)
        assert isinstance(obj, types.CodeType)
        assert obj.co_filename == stage1.filename(name, is_package)
        assert obj.co_filename.startswith("<easycluster-ssh>/")
    assert zlib.decompress(script).decode().endswith("\nremote_main()\n")
    assert payload.sent_size(payload.payload()) == len(script) + len(code)


@pytest.mark.parametrize(
    "data",
    [b"", b"junk" * 10, payload.payload()[:-1], payload.payload() + b"x", b"X" + payload.payload()],
)
def test_unbundle_refuses_what_is_not_a_bundle(data):
    with pytest.raises(ValueError):
        payload.unbundle(data)


def test_stage1_constants_agree_with_the_protocol():
    assert stage1.KEY_SIZE == boot.KEY_SIZE


# -- stage 1 for real, over pipes -------------------------------------------------------


class Stage1:
    """``python -c STAGE0`` with the bundle's stage-1 script: what ssh would run."""

    def __init__(self) -> None:
        script = payload.unbundle(payload.payload())[0]
        command = boot.stage0_command(sys.executable, len(script))
        self.proc = subprocess.Popen(
            ["sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.out = b""
        self.send(script)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def read_until(self, n: int, timeout: float = 20) -> bytes:
        """At least ``n`` bytes of stdout (all of it if it ends first)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while len(self.out) < n:
            left = deadline - time.monotonic()
            assert left > 0, f"stage 1 said only {self.out!r}"
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self.out += chunk
        return self.out

    def after_greeting(self, n: int) -> bytes:
        greeting = b"\nEASYCLUSTER-BOOT %d.%d.%d\n" % sys.version_info[:3]
        return self.read_until(len(greeting) + n)[len(greeting) :]

    def end(self) -> bytes:
        """Close stage 1's stdin; its stderr once it has exited."""
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        self.proc.wait(20)
        return self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(20)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


@pytest.fixture
def stage():
    made = []

    def make() -> Stage1:
        made.append(Stage1())
        return made[-1]

    yield make
    for s in made:
        s.close()


def test_stage1_takes_code_for_its_magic_and_serves(stage):
    _, code, _ = payload.unbundle(payload.payload())
    s = stage()
    s.send(code + os.urandom(boot.KEY_SIZE))
    out = s.after_greeting(len(stage1.READY) + handshake.SERVER_HELLO_SIZE)
    assert out.startswith(stage1.READY)
    handshake.ClientHandshake.check_greeting_start(out[len(stage1.READY) :])  # the server's


def test_stage1_asks_for_the_source_when_the_magic_differs(stage):
    _, code, source = payload.unbundle(payload.payload())
    foreign = OTHER_MAGIC + code[4:]
    s = stage()
    s.send(foreign + os.urandom(boot.KEY_SIZE))
    assert s.after_greeting(len(stage1.WANT_SOURCE)) == stage1.WANT_SOURCE  # nothing more
    s.send(source)
    out = s.after_greeting(len(stage1.WANT_SOURCE) + handshake.SERVER_HELLO_SIZE)
    handshake.ClientHandshake.check_greeting_start(out[len(stage1.WANT_SOURCE) :])


def test_stage1_ends_when_the_fallback_is_not_source(stage):
    _, code, _ = payload.unbundle(payload.payload())
    foreign = OTHER_MAGIC + code[4:]
    s = stage()
    s.send(foreign + os.urandom(boot.KEY_SIZE) + foreign)
    err = s.end()
    assert s.proc.returncode == 1
    assert b"the client sent no source" in err


def test_stage1_ends_when_stdin_closes_early(stage):
    _, code, _ = payload.unbundle(payload.payload())
    s = stage()
    s.send(code[:100])
    err = s.end()
    assert s.proc.returncode == 1
    assert b"stdin closed before the payload arrived" in err


# -- what the shipped server imports at start-up ---------------------------------------

_PROBE = """
import marshal, sys, zlib
ns = {"__name__": "stage1_probe"}
exec(compile(open(sys.argv[1]).read(), "stage1", "exec"), ns)
blob = open(sys.argv[2], "rb").read()
sys.meta_path.insert(0, ns["ShippedModules"](marshal.loads(zlib.decompress(blob[8:]))))
import easycluster.remote.process
from easycluster.objects import serialize
before = sorted(m for m in ("cloudpickle", "logging", "dataclasses") if m in sys.modules)
serialize.dumps({"plain": [1, 2.0, "x"]})
plain = "cloudpickle" in sys.modules
ns2 = {}
exec("from easycluster import *", ns2)
serialize.dumps(lambda: 1)
print(before, plain, sorted(n for n in ns2 if not n.startswith("__")) == sorted(
    __import__("easycluster").__all__), "cloudpickle" in sys.modules,
    __import__("easycluster").ServerObject.__module__)
"""


@pytest.mark.parametrize("which", ["code", "source"])
def test_the_shipped_server_loads_cloudpickle_logging_dataclasses_only_on_need(which, tmp_path):
    _, code, source = payload.unbundle(payload.payload())
    blob = tmp_path / "section"
    blob.write_bytes(code if which == "code" else source)
    # -I: no site-packages, so every easycluster and cloudpickle module comes from the
    # section, as on a remote host with nothing installed.
    out = subprocess.run(
        [sys.executable, "-I", "-c", _PROBE, payload.module_path(payload.STAGE1), str(blob)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "False", "True", "True", "easycluster.objects.exports"]


# -- the disk cache ----------------------------------------------------------------------


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    # A fixed stamp: the real one changes whenever a package file is saved (its own test
    # is below), and a test must not depend on nobody editing the tree meanwhile.
    monkeypatch.setattr(payload, "fingerprint", lambda role, extra: b"S" * 32)
    return tmp_path / "easycluster"


def test_the_fingerprint_follows_every_source_file(tmp_path, monkeypatch):
    monkeypatch.setattr(payload, "_HERE", str(tmp_path))
    (tmp_path / "sub").mkdir()
    mod = tmp_path / "sub" / "mod.py"
    mod.write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not a source")
    first = payload.fingerprint("server", ())
    assert len(first) == 32 and payload.fingerprint("server", ()) == first
    os.utime(mod, ns=(0, os.stat(mod).st_mtime_ns + 1))
    second = payload.fingerprint("server", ())
    assert second != first
    (tmp_path / "notes.txt").write_text("still not a source, but longer")
    assert payload.fingerprint("server", ()) == second
    mod.write_text("x = 22\n")
    os.utime(mod, ns=(0, 0))
    assert payload.fingerprint("server", ()) not in (first, second)
    assert payload.fingerprint("server", ("a.b",)) != payload.fingerprint("server", ())


def _fresh() -> bytes:
    return payload._make("server", ())  # the disk cache, not this process's


def test_the_bundle_is_cached_on_disk_privately(cache_home, monkeypatch):
    first = _fresh()
    path = payload.cache_path("server", ())
    assert path is not None and os.path.dirname(path) == str(cache_home)
    assert stat.S_IMODE(os.stat(cache_home).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    monkeypatch.setattr(payload, "build", lambda *a: pytest.fail("built again"))
    assert _fresh() == first
    assert [n for n in os.listdir(cache_home) if n.startswith(".")] == []  # no temp left


def test_a_stale_or_damaged_cache_is_rebuilt(cache_home):
    first = _fresh()
    path = payload.cache_path("server", ())
    assert path is not None
    stamp = b"S" * 32
    for damaged in (b"\x00" * 32 + first, stamp + first[:-10], stamp + b"garbage"):
        with open(path, "wb") as f:
            f.write(damaged)
        again = _fresh()
        assert payload.unbundle(again)
        with open(path, "rb") as f:
            assert f.read() == stamp + again  # written again


def test_other_roots_have_their_own_cache_file():
    assert payload.cache_path("server", ()) != payload.cache_path("server", ("x.y",))


def test_a_cache_directory_others_may_write_is_not_used(cache_home, monkeypatch):
    cache_home.mkdir(mode=0o700)
    os.chmod(cache_home, 0o777)
    built = []
    real_build = payload.build
    monkeypatch.setattr(payload, "build", lambda *a: built.append(a) or real_build(*a))
    _fresh()
    _fresh()
    assert len(built) == 2 and os.listdir(cache_home) == []


def test_no_cache_without_a_usable_home(monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")
    assert payload.cache_path("server", ()) is None
    assert payload.unbundle(_fresh())  # built in memory all the same


def test_threads_asking_at_once_get_one_bundle_built_once(cache_home, monkeypatch):
    """A fan-out's threads all want the bundle at once: one builds it (compile() is not
    safe from several threads), the others wait and get the same bytes."""
    monkeypatch.setattr(payload, "_bundles", {})
    builds = []
    real_build = payload.build

    def counted(*args):
        builds.append(1)
        return real_build(*args)

    monkeypatch.setattr(payload, "build", counted)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(
            pool.map(lambda _: payload.payload("server", ("easycluster.cluster.tree",)), range(16))
        )
    assert len(set(got)) == 1 and len(builds) == 1


def test_finding_the_cached_bundle_loads_no_openssl():
    # The master looks up the bundle just before and while ssh starts: loading OpenSSL
    # (2 ms here) for two cache-key digests would come before ssh's start.
    probe = (
        "import sys\n"
        "from easycluster.launch import payload\n"
        "payload.cache_path('server', ())\n"
        "assert len(payload.fingerprint('server', ())) == 32\n"
        "print('_hashlib' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["False"]
