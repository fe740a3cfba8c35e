"""The public face: EasyCluster 0.22's names, and ours, are importable from the package."""

from __future__ import annotations

import subprocess
import sys

import easycluster

# EasyCluster 0.22's __all__ (also read by test_compat022.py) ...
ALL_022 = [
    "AutoThreadingClient",
    "ThreadedClient",
    "Client",
    "ClientGroup",
    "Connection",
    "DefaultRemoteProxy",
    "RemoteException",
    "RemoteProxy",
    "SelfIterProxy",
    "ServerObject",
    "add_key_options",
    "call_method_multi",
    "call_multi",
    "decode_key",
    "define_common",
    "definitions_module",
    "eval_multi",
    "exec_return",
    "execblock_multi",
    "generate_key",
    "key_from_options",
    "make_server_class",
    "make_singleton",
    "read_key_file",
    "write_key_file",
    "parse_connection_spec",
]
# ... plus the public names it left out of __all__.
COMPAT = ALL_022 + [
    "SINGLE",
    "NonblockingResponse",
    "get_global",
    "set_global",
    "GeneratorProxy",
    "FileProxy",
]


def test_compat_names_exported():
    missing = [n for n in COMPAT if not hasattr(easycluster, n)]
    assert not missing
    assert set(COMPAT) <= set(easycluster.__all__)


def test_all_names_resolve():
    for name in easycluster.__all__:
        assert getattr(easycluster, name) is not None, name


def test_connection_lost_is_ioerror():
    assert issubclass(easycluster.ConnectionLost, IOError)
    assert issubclass(easycluster.AuthenticationError, easycluster.ConnectionLost)
    assert issubclass(easycluster.CallTimeout, TimeoutError)


def test_spawn_local_lives_in_server_module():
    from easycluster.server import spawn_local

    with spawn_local() as rmt:
        assert rmt.eval("1 + 1") == 2


def test_python_dash_m_easycluster_help():
    out = subprocess.run(
        [sys.executable, "-m", "easycluster", "--help"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 and "-S" in out.stdout and "--keyfile" in out.stdout


def test_console_script_version():
    import shutil

    exe = shutil.which("easycluster") or f"{sys.prefix}/bin/easycluster"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and easycluster.VERSION in out.stdout


def test_definitions_modules_bind_exactly_0_22s_public_names():
    from easycluster.objects.definitions import PREAMBLE_NAMES

    assert sorted(PREAMBLE_NAMES) == sorted(ALL_022)
