"""Addresses for the standalone server: the listening socket, the allow list, sources.

``bind_tcp`` opens the listening socket (dual-stack by default); ``parse_allow`` and
``allowed`` read and apply the ``-a`` allow list; ``source_of`` names the source a
pending handshake is counted under (``listener.py``: the per-source caps).
"""

from __future__ import annotations

import errno
import socket

# ``ipaddress`` loads on first use: the port of ``easycluster -S`` opens without it (nor
# ``typing``: annotations only).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from typing import List, Optional, Sequence, Union

    Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def parse_allow(nets: Sequence[str]) -> List[Network]:
    """Parse ``-a`` values (addresses or CIDR networks); raise ValueError naming a bad one."""
    if not nets:
        return []
    import ipaddress

    out: List[Network] = []
    for n in nets:
        try:
            out.append(ipaddress.ip_network(n.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"bad allow-list entry {n!r}: expected an address or network "
                "such as 10.0.0.0/8 or 2001:db8::/32"
            )
    return out


def allowed(addr: str, nets: Sequence[Network]) -> bool:
    """True if ``addr`` is in one of ``nets`` (empty list: everything is allowed)."""
    if not nets:
        return True
    import ipaddress

    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == n.version and ip in n for n in nets)


def bind_tcp(port: int, bind: Optional[str] = None, ipv6: bool = True) -> socket.socket:
    """A listening socket: dual-stack ``[::]`` by default, IPv4 only with ``ipv6=False``."""
    if bind:
        # An ASCII name goes as bytes: a str would load the IDNA codec (about 1 ms).
        host: Union[str, bytes] = bind.encode("ascii") if bind.isascii() else bind
        infos = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
        if not ipv6:
            infos = [i for i in infos if i[0] == socket.AF_INET] or infos
        family, _, _, _, addr = infos[0]
    elif ipv6 and socket.has_ipv6:
        family, addr = socket.AF_INET6, ("::", port, 0, 0)
    else:
        family, addr = socket.AF_INET, ("0.0.0.0", port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if not bind else 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise OSError(e.errno, f"port {port} is already in use")
        if family == socket.AF_INET6 and not bind and e.errno == errno.EAFNOSUPPORT:
            return bind_tcp(port, None, ipv6=False)
        raise
    return sock


def source_of(addr: str) -> str:
    """The source a pending handshake is counted under: the IPv4 address (also for an
    IPv4-mapped IPv6 one), or the /64 network of an IPv6 address."""
    # IPv4 as ``accept`` writes it (dotted, canonical), plain or mapped: itself, without
    # ``ipaddress`` (about 1 ms to load: the first connection of every server paid it)
    v4 = addr[7:] if addr.startswith("::ffff:") else addr
    if v4.count(".") == 3 and v4.replace(".", "").isdigit() and v4.isascii():
        return v4
    import ipaddress

    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:  # (not an IP address: AF_UNIX, say) one source
        return addr
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
