"""The payloads one level of a tree ships to the level below it.

A gateway runs from memory, with no source files to build a payload from, so its
parent sends what it needs along with the first call on its connection: the *gateway*
payload (our server carrying the modules of the gateway role, ``roots``), needed only
when other gateways are below it, and the *node* payload (the plain server) for the
sessions it opens to its nodes. The admin builds both on first need.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from ..launch import payload
from .topology import Topology

Boots = Tuple[Optional[bytes], bytes]  # (gateway payload or None, node payload)


class Payloads:
    """The two payloads of one level: given (a gateway's, from its parent) or built on
    first need (``payload.payload`` is safe from several threads and cached)."""

    def __init__(
        self, roots: Sequence[str], gateway: Optional[bytes] = None, node: Optional[bytes] = None
    ) -> None:
        self.roots = tuple(roots)
        self.gateway_data = gateway
        self.node_data = node

    def gateway(self) -> bytes:
        """The payload a gateway of this role boots with."""
        if self.gateway_data is None:
            self.gateway_data = payload.payload("server", self.roots)
        return self.gateway_data

    def node(self) -> bytes:
        """The payload a node's session boots with."""
        if self.node_data is None:
            self.node_data = payload.payload("server")
        return self.node_data

    def for_gateway(self, topology: Topology, gw: str) -> Boots:
        """What the first call to gateway ``gw`` carries (the gateway payload only when
        other gateways are below it)."""
        below = topology.children.get(gw, frozenset())
        deeper = any(c in topology.children for c in below)
        return (self.gateway() if deeper else None, self.node())

    def take(self, boots: Boots) -> None:
        """Keep what a parent sent (a gateway payload it did not send: the one kept)."""
        self.gateway_data = boots[0] or self.gateway_data
        self.node_data = boots[1]
