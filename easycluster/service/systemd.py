"""The boot service: render the systemd unit, install and remove the kit, drive systemctl.

Two modes:

* live (``Layout()``): files go to ``/etc``; ``systemctl`` talks to the running systemd.
  Where systemd is not running (no ``/run/systemd/system``: a container, another init
  system) every step that needs it raises ``SystemdUnavailable`` saying what to do
  instead. Files are still written by ``install``.
* staging (``Layout(root=DIR)``): files go under ``DIR`` and the unit is enabled there
  with ``systemctl --root=DIR``, which needs no running systemd (packages, images,
  tests). ``start``/``stop``/``status`` refuse to run in this mode.

The kit (unit template, default configuration, admins' README) ships inside the package
as ``easycluster/service/kit/``.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from typing import Callable, List, Mapping, Optional, Sequence

from .. import keys
from ..errors import ConfigError, SystemdUnavailable
from .config import parse_config, set_values

UNIT_NAME = "easycluster.service"
KIT_FILES = ("easycluster.service", "easycluster.conf", "README.md")
SYSTEMD_RUNNING_PROBE = "/run/systemd/system"

Output = Callable[[str], None]


@dataclass(frozen=True)
class Layout:
    """Where the kit goes. Paths are as seen by the installed system; ``host`` maps them
    into ``root`` (None: the live system)."""

    root: Optional[str] = None
    unit: str = f"/etc/systemd/system/{UNIT_NAME}"
    config: str = "/etc/easycluster/easycluster.conf"
    key: str = "/etc/easycluster/easycluster.key"
    probe: str = SYSTEMD_RUNNING_PROBE

    def host(self, path: str) -> str:
        """``path`` of the installed system as a path on this machine."""
        return os.path.join(self.root, path.lstrip("/")) if self.root else path


def kit_text(name: str) -> str:
    """The text of one kit file (``KIT_FILES``) from the installed package."""
    if name not in KIT_FILES:
        raise ValueError(f"no kit file {name!r}")
    return resources.files("easycluster.service").joinpath("kit", name).read_text(encoding="utf-8")


def server_command() -> List[str]:
    """Absolute argv prefix that runs this installation's ``easycluster`` command: the
    console script beside ``sys.executable`` (a venv's bin/), else ``python -m``."""
    bindir = os.path.dirname(sys.executable)
    script = os.path.join(bindir, "easycluster")
    if os.path.isfile(script) and os.access(script, os.X_OK):
        return [os.path.abspath(script)]
    return [os.path.abspath(sys.executable), "-m", "easycluster"]


def _unit_quote(arg: str) -> str:
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not re.search(r'[\s"\'\\;]', arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(config_path: str, command: Optional[Sequence[str]] = None) -> str:
    """The unit file text: ``ExecStart`` runs ``command -S --config config_path``."""
    argv = list(command or server_command()) + ["-S", "--config", config_path]
    return kit_text("easycluster.service").replace(
        "@EXEC_START@", " ".join(_unit_quote(a) for a in argv)
    )


def exec_start(unit_text: str) -> List[str]:
    """The argv of a unit's ``ExecStart=`` line (quotes, ``%%`` and ``$$`` undone)."""
    for line in unit_text.splitlines():
        if line.startswith("ExecStart="):
            value = line[len("ExecStart=") :].lstrip("-@:+!")
            return [a.replace("%%", "%").replace("$$", "$") for a in shlex.split(value)]
    raise ValueError("the unit has no ExecStart= line")


def render_config(values: Mapping[str, str]) -> str:
    """The default configuration with ``values`` (key -> text) filled in; checked by
    parsing it, so a bad value raises ConfigError before anything is written."""
    text = (
        set_values(kit_text("easycluster.conf"), values) if values else kit_text("easycluster.conf")
    )
    parse_config(text, "the configuration to install")
    return text


def systemd_running(layout: Layout = Layout()) -> bool:
    """True if this machine was booted with systemd (``/run/systemd/system`` exists)."""
    return os.path.isdir(layout.probe)


def _write(path: str, text: str, mode: int) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".easycluster-", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _systemctl(
    args: Sequence[str], layout: Layout, capture: bool = False
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("systemctl")
    if exe is None:
        raise SystemdUnavailable(
            "systemctl not found: is this a systemd machine? Run the "
            f"server directly: {_direct_command(layout)}"
        )
    argv = [exe] + ([f"--root={layout.root}"] if layout.root else []) + list(args)
    return subprocess.run(argv, text=True, capture_output=capture, check=False)


def _direct_command(layout: Layout) -> str:
    return shlex.join(server_command() + ["-S", "--config", layout.config])


def _require_systemd(layout: Layout, doing: str, instead: str) -> None:
    if layout.root:
        raise ConfigError(
            f"cannot {doing} in a staging root ({layout.root}); drop --root to act on this machine"
        )
    if not systemd_running(layout):
        raise SystemdUnavailable(
            f"systemd is not running here (no {layout.probe}: a container, or another "
            f"init system?), so it cannot {doing}. {instead}"
        )


def install(
    layout: Layout,
    keyfile: Optional[str] = None,
    overwrite: bool = False,
    config_values: Optional[Mapping[str, str]] = None,
    out: Output = print,
) -> int:
    """Write the unit, the configuration and the key, then enable the unit.

    The unit is always (re)written. The configuration and the key are written only when
    missing, or with ``overwrite``. ``keyfile`` installs a copy of that key; without
    it a new key is generated when none exists. Returns 0; raises ConfigError for bad
    input (before anything is written) and SystemdUnavailable when the unit cannot be
    enabled (after the files are written).
    """
    config_text = render_config(config_values or {})
    new_key = keys.read_key_file(keyfile) if keyfile else None
    key_path, config_path = layout.host(layout.key), layout.host(layout.config)
    key_exists = os.path.lexists(key_path)
    if key_exists and not overwrite:
        old_key = keys.read_key_file(key_path)  # refuses a loose or broken one
        if new_key is not None and old_key != new_key:
            raise ConfigError(
                f"{key_path} exists and holds another key than {keyfile}; add -O to replace it"
            )

    _write(layout.host(layout.unit), render_unit(layout.config), 0o644)
    out(f"wrote the unit {layout.host(layout.unit)}")
    if os.path.lexists(config_path) and not overwrite:
        out(f"kept the existing configuration {config_path} (-O replaces it)")
    else:
        _write(config_path, config_text, 0o644)
        out(f"wrote the configuration {config_path}")
    if key_exists and not overwrite:
        out(f"kept the existing key {key_path} (-O replaces it)")
    else:
        os.makedirs(os.path.dirname(key_path), mode=0o755, exist_ok=True)
        keys.write_key_file(key_path, new_key, overwrite=True)
        what = f"a copy of {keyfile}" if keyfile else "a new key"
        out(f"wrote {what} to {key_path} (mode 0600); clients need the same key")
    installed = parse_config(_read(config_path), config_path)
    if installed.get("bind", ("127.0.0.1",))[0] in ("127.0.0.1", "::1", "localhost"):
        out(
            f"note: the server listens on loopback only; set 'bind' in {layout.config} "
            "(or install with -b ADDR) to serve the cluster"
        )

    if not layout.root:
        _require_systemd(
            layout,
            f"enable {UNIT_NAME}",
            "The files are installed. Enable the unit for the next boot "
            "without a running systemd with 'easycluster --install --root /', "
            f"or run the server directly: {_direct_command(layout)}",
        )
        _systemctl(["daemon-reload"], layout)
    r = _systemctl(["enable", UNIT_NAME], layout, capture=bool(layout.root))
    for line in (r.stdout or "").splitlines() + (r.stderr or "").splitlines():
        if "non-existent unit" not in line:  # a staging root holds no multi-user.target
            out(line)
    if r.returncode != 0:
        raise SystemdUnavailable(
            f"'systemctl enable {UNIT_NAME}' failed (status "
            f"{r.returncode}); the files are installed"
        )
    out(
        f"enabled {UNIT_NAME}"
        + (f" in {layout.root}" if layout.root else "; start it with 'easycluster --start'")
    )
    return 0


def uninstall(layout: Layout, purge: bool = False, out: Output = print) -> int:
    """Stop (live, when systemd runs) and disable the unit, remove it; with ``purge``
    also the configuration and the key. Returns 0 (also when nothing was installed)."""
    unit = layout.host(layout.unit)
    if os.path.lexists(unit):
        if not layout.root and systemd_running(layout):
            _systemctl(["disable", "--now", UNIT_NAME], layout)
        else:
            _disable_offline(layout)
        os.unlink(unit)
        out(f"removed the unit {unit}")
        if not layout.root and systemd_running(layout):
            _systemctl(["daemon-reload"], layout)
    else:
        out(f"no unit at {unit}: nothing to disable")
    targets = [layout.host(layout.config), layout.host(layout.key)]
    if purge:
        for path in targets:
            if os.path.lexists(path):
                os.unlink(path)
                out(f"removed {path}")
        directory = os.path.dirname(layout.host(layout.config))
        if os.path.isdir(directory) and not os.listdir(directory):
            os.rmdir(directory)
    else:
        kept = [p for p in targets if os.path.lexists(p)]
        if kept:
            out(f"kept {' and '.join(kept)} (--purge removes them)")
    return 0


def _disable_offline(layout: Layout) -> None:
    if shutil.which("systemctl"):
        _systemctl(["disable", UNIT_NAME], Layout(root=layout.root or "/"), capture=True)
    wants = layout.host(os.path.join(os.path.dirname(layout.unit), "*.wants", UNIT_NAME))
    for link in glob.glob(wants):
        os.unlink(link)


def query_installed(layout: Layout, out: Output = print) -> int:
    """0 if the unit is installed (and, live, systemd knows it), 1 if not."""
    unit = layout.host(layout.unit)
    present = os.path.exists(unit)
    if not layout.root:
        _require_systemd(
            layout,
            f"tell whether {UNIT_NAME} is installed",
            f"The unit file {'is' if present else 'is not'} at {unit}; "
            "'easycluster --query-installed --root /' checks the files only.",
        )
    if not present:
        out(f"not installed: no unit at {unit}")
        return 1
    state = "present"
    if shutil.which("systemctl"):
        r = _systemctl(["is-enabled", UNIT_NAME], layout, capture=True)
        state = (r.stdout.strip() or r.stderr.strip() or "unknown").splitlines()[0]
    out(f"installed: {unit} ({state}); runs: {shlex.join(exec_start(_read(unit)))}")
    return 0


def control(action: str, layout: Layout, out: Output = print) -> int:
    """``start``, ``stop`` or ``status`` through systemctl; 0 on success, 1 otherwise."""
    instead = {
        "start": f"Run the server directly instead: {_direct_command(layout)} "
        "(add -d -P PIDFILE to detach)",
        "stop": "Stop a server started by hand with 'kill -TERM PID' (its pid file, or "
        "pgrep -f 'easycluster -S').",
        "status": "Look for a server started by hand with: pgrep -af 'easycluster -S'",
    }[action]
    _require_systemd(layout, f"{action} {UNIT_NAME}", instead)
    args = [action, UNIT_NAME] + (["--no-pager"] if action == "status" else [])
    r = _systemctl(args, layout)
    if r.returncode != 0 and action != "status":
        out(
            f"systemctl {action} {UNIT_NAME} failed (status {r.returncode}); "
            f"see 'journalctl -u {UNIT_NAME}'"
        )
    return 0 if r.returncode == 0 else 1


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()
