"""Servers started over the system's OpenSSH ``ssh``: nothing installed on the remote host.

Placeholder until the ssh transport lands: ``open_channel`` says so clearly.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

from . import wire
from .errors import ConfigError
from .transport import Channel


def open_channel(host: str, port: Optional[int] = None, user: Optional[str] = None,
                 ssh: Any = None, rpython: Optional[str] = None, extra_args: Sequence[str] = (),
                 options: wire.WireOptions = wire.WireOptions(),
                 timeout: Optional[float] = 10.0) -> Tuple[Channel, Callable[[], None], str]:
    """Start a server on ``host`` over ssh; return ``(channel, closer, peername)``."""
    raise ConfigError("connecting over ssh is not available in this version yet; pass "
                      "key=read_key_file(FILE) to reach an 'easycluster -S' server")
