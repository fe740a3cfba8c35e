"""Client-side handles for remote things. ``GlobalProxy``: a remote global by dotted name.

``rmt.os.path.join('a', 'b')`` calls ``os.path.join`` on the server; ``rmt.x.value``
reads the remote global ``x`` and ``rmt.x.value = 5`` sets it.
"""

from __future__ import annotations

from typing import Any


class GlobalProxy:
    """A dotted name on the server, resolved in the client's definitions module."""

    __slots__ = ("_client", "_name")

    def __init__(self, client: Any, name: str):
        object.__setattr__(self, "_client", client)
        object.__setattr__(self, "_name", name)

    def __getattr__(self, attr: str) -> GlobalProxy:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return GlobalProxy(self._client, f"{self._name}.{attr}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._client.call(self._name, *args, **kwargs)

    @property
    def value(self) -> Any:
        """The current value of the remote global (one round trip)."""
        return self._client.get_global(self._name)

    @value.setter
    def value(self, val: Any) -> None:
        self._client.set_global(self._name, val)

    def __repr__(self) -> str:
        return f"<remote global {self._name} on {self._client.peername}>"
