"""A real multi-level network built with ``ip netns``, for the tree-mode tests.

Layout (``build_network([(gateways, nodes), ...])``), all on this host as root::

    root namespace (admin) ── bridge ADMIN_BR 10.X.0.1/24
        │ veth per gateway
    gateway namespaces        10.X.0.(10+i) on the admin side,
        │ veth per gateway    10.X.(g+1).(1+k) on the side of group g
    switch namespace of group g ── bridge (no address)
        │ veth per node
    node namespaces           10.X.(g+1).(100+j)

Gateways do not forward (a fresh namespace has ``ip_forward`` off) and the admin has
an ``unreachable`` route for the whole ``10.X.0.0/16`` (so its default route cannot
carry the packets elsewhere), so a node is reachable only by logging in to one of its
gateways first. Every gateway and node namespace runs a real ``sshd`` (throwaway host
key shared by all, one authorized user key for root, ``SetEnv EC_NODE=<name>`` so a
command can tell where it ran). ``network.config`` is an ``ssh_config`` naming every
host (``gw1``, ``node3``, ...), usable from any namespace (they share the filesystem,
this venv's Python included). Several gateways in one group all reach its nodes
(failover).

``close()`` kills every process left in the namespaces (sshd and its sessions, by
pid from ``ip netns pids``), deletes the namespaces (their veths go with them) and the
admin bridge; it runs even when building fails halfway. Waits are bounded.

The ``netns`` fixture (module scope) builds two groups: ``gw1`` for ``node[1-2]``, and
``gw[2-3]`` sharing ``node[3-4]``. It skips when not root or ``ip``/``sshd`` are
missing, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
from sshd import SSHD, sshd_missing

Group = Tuple[Sequence[str], Sequence[str]]  # (gateway names, node names)


class Host:
    """One namespace on the network: its name, namespace, addresses and sshd."""

    def __init__(self, name: str, netns: str, ip: str) -> None:
        self.name = name
        self.netns = netns
        self.ip = ip  # the address ssh uses (admin side for gateways)
        self.sshd: Optional[subprocess.Popen] = None


class Network:
    """A built network (see the module docstring); use as a context manager."""

    def __init__(self, workdir: str) -> None:
        self.dir = workdir
        self.tag = secrets.token_hex(2)
        self.prefix = _free_prefix()
        self.bridge = f"ecb{self.tag}"
        self.gateways: Dict[str, Host] = {}
        self.nodes: Dict[str, Host] = {}
        self.groups: List[Group] = []
        self.namespaces: List[str] = []
        self.config = os.path.join(workdir, "ssh_config")
        self.identity = os.path.join(workdir, "id_root")
        self._links: List[str] = []  # links left in the root namespace
        self._count = 0
        self._route: Optional[str] = None  # the unreachable route added in the root namespace
        self._direct_routes: List[str] = []  # routes added by allow_direct, root namespace
        self._neigh_saved: Dict[str, str] = {}  # neighbour-table limits we raised, old values

    # -- building ------------------------------------------------------------

    def build(self, groups: Sequence[Group]) -> Network:
        self._keys()
        # Every namespace's ARP entries count against one table limit for the whole host
        # (gc_thresh3, 1024 by default): past it the kernel drops packets ("neighbor
        # table overflow"), and a network of a thousand nodes loses ssh sessions.
        hosts = sum(len(gws) + len(nodes) for gws, nodes in groups)
        self._neigh_room(4 * hosts + 512)
        # The admin's default route may lead to a network that answers any address
        # (a proxy); the node subnets must be plainly unreachable from here instead.
        _ip("route", "add", "unreachable", f"{self.prefix}.0.0/16")
        self._route = f"{self.prefix}.0.0/16"
        _ip("link", "add", self.bridge, "type", "bridge")
        self._links.append(self.bridge)
        _ip("addr", "add", f"{self.prefix}.0.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        count = 0
        for g, (gws, nodes) in enumerate(groups):
            self.groups.append((tuple(gws), tuple(nodes)))
            switch = self._netns(f"s{g}")
            _ip("link", "add", "br0", "type", "bridge", netns=switch)
            _ip("link", "set", "br0", "up", netns=switch)
            for k, gw in enumerate(gws):
                host = self.gateways.get(gw)
                if host is None:
                    count += 1
                    ns = self._netns(f"g{count}")
                    host = Host(gw, ns, f"{self.prefix}.0.{10 + count}")
                    self.gateways[gw] = host
                    self._veth(ns, "up0", None, self.bridge, f"{host.ip}/24")
                self._veth(host.netns, f"dn{g}", switch, "br0", f"{self.prefix}.{g + 1}.{1 + k}/24")
            for j, node in enumerate(nodes):
                ns = self._netns(f"n{g}x{j}")
                host = Host(node, ns, f"{self.prefix}.{g + 1}.{100 + j}")
                self.nodes[node] = host
                self._veth(ns, "eth0", switch, "br0", f"{host.ip}/24")
        self._ssh_config()
        for host in [*self.gateways.values(), *self.nodes.values()]:
            self._start_sshd(host)
        return self

    def _neigh_room(self, entries: int) -> None:
        """Raise the host's IPv4 neighbour-table limits to hold ``entries`` (restored by
        ``close``); limits already that high are left alone."""
        base = "/proc/sys/net/ipv4/neigh/default/"
        for name, want in (("gc_thresh3", entries), ("gc_thresh2", entries // 2)):
            with open(base + name) as f:
                old = f.read().strip()
            if int(old) < want:
                with open(base + name, "w") as f:
                    f.write(str(want))
                self._neigh_saved[name] = old

    def _netns(self, suffix: str) -> str:
        name = f"ec{self.tag}{suffix}"
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("link", "set", "lo", "up", netns=name)
        return name

    def _veth(self, ns: str, ifname: str, peer_ns: Optional[str], bridge: str, addr: str) -> None:
        """A veth pair: ``ifname`` with ``addr`` in ``ns``, the other end enslaved to
        ``bridge`` in ``peer_ns`` (None: the root namespace)."""
        self._count += 1
        a, b = f"e{self.tag}{self._count}a", f"e{self.tag}{self._count}b"
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        # Created in the root namespace: close() deletes them there if a step below
        # fails before they move (deleting a link that moved away just fails quietly).
        self._links += [a, b]
        _ip("link", "set", a, "netns", ns)
        _ip("link", "set", a, "name", ifname, netns=ns)
        _ip("addr", "add", addr, "dev", ifname, netns=ns)
        _ip("link", "set", ifname, "up", netns=ns)
        if peer_ns is not None:
            _ip("link", "set", b, "netns", peer_ns)
        _ip("link", "set", b, "master", bridge, netns=peer_ns)
        _ip("link", "set", b, "up", netns=peer_ns)

    def _keys(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        self.host_key = os.path.join(self.dir, "host_key")
        host_pub = _keygen(self.host_key)
        user_pub = _keygen(self.identity)
        self.authorized = _write(os.path.join(self.dir, "authorized_keys"), user_pub + "\n", 0o600)
        pub = " ".join(host_pub.split()[:2])
        self.known_hosts = _write(os.path.join(self.dir, "known_hosts"), f"ecnet {pub}\n")

    def _ssh_config(self) -> None:
        lines = []
        for host in [*self.gateways.values(), *self.nodes.values()]:
            lines += [f"Host {host.name}", f"    HostName {host.ip}"]
        lines += [
            "Host *",
            "    User root",
            f"    IdentityFile {self.identity}",
            "    IdentitiesOnly yes",
            "    BatchMode yes",
            "    StrictHostKeyChecking yes",
            f"    UserKnownHostsFile {self.known_hosts}",
            "    HostKeyAlias ecnet",
            "    CheckHostIP no",
            "    LogLevel ERROR",
            "    ConnectTimeout 5",
            "",
        ]
        _write(self.config, "\n".join(lines))

    def _start_sshd(self, host: Host, timeout: float = 15.0) -> None:
        home = os.path.join(self.dir, "home", host.name)
        os.makedirs(home, mode=0o700, exist_ok=True)
        log = os.path.join(self.dir, f"sshd-{host.name}.log")
        if os.path.exists(log):
            os.unlink(log)  # a restart: wait for this sshd's own "listening"
        cfg = _write(
            os.path.join(self.dir, f"sshd-{host.name}.conf"),
            "\n".join(
                [
                    "Port 22",
                    f"ListenAddress {host.ip}",
                    f"HostKey {self.host_key}",
                    f"PidFile {os.path.join(self.dir, f'sshd-{host.name}.pid')}",
                    f"AuthorizedKeysFile {self.authorized}",
                    "AuthenticationMethods publickey",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "StrictModes no",
                    "UsePAM no",
                    "PermitRootLogin yes",
                    "PrintMotd no",
                    "UseDNS no",
                    "MaxStartups 200",
                    "MaxSessions 200",
                    f"SetEnv HOME={home} EC_NODE={host.name}",
                    "",
                ]
            ),
        )
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        host.sshd = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, SSHD, "-D", "-f", cfg, "-E", log],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if host.sshd.poll() is not None:
                break
            if os.path.exists(log) and "Server listening" in _read(log):
                return
            time.sleep(0.02)
        raise RuntimeError(
            f"sshd for {host.name} did not start: {_read(log) if os.path.exists(log) else ''}"
        )

    # -- using ---------------------------------------------------------------

    def ssh_argv(self, host: str, *command: str) -> List[str]:
        """``ssh`` argv reaching ``host`` with this network's config."""
        return ["ssh", "-F", self.config, host, *command]

    def run_in(
        self, host: str, argv: Sequence[str], timeout: float = 30.0
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` inside ``host``'s namespace and wait (bounded)."""
        h = self.gateways.get(host) or self.nodes[host]
        return subprocess.run(
            ["ip", "netns", "exec", h.netns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def allow_direct(self) -> None:
        """Let the admin reach every node directly (for flat-vs-tree benches): gateways
        forward in the kernel, the admin routes each node subnet through the group's
        first gateway, and nodes route back through it. No gateway process is involved."""
        for g, (gws, nodes) in enumerate(self.groups):
            first = self.gateways[gws[0]]
            _ip("netns", "exec", first.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            subnet = f"{self.prefix}.{g + 1}.0/24"
            _ip("route", "add", subnet, "via", first.ip)
            self._direct_routes.append(subnet)
            for node in nodes:
                back = f"{self.prefix}.{g + 1}.1"  # the first gateway's group-side address
                _ip(
                    "route",
                    "add",
                    f"{self.prefix}.0.0/24",
                    "via",
                    back,
                    netns=self.nodes[node].netns,
                )

    def link_down(self, node: str) -> None:
        """Partition ``node``: its only interface goes down."""
        _ip("link", "set", "eth0", "down", netns=self.nodes[node].netns)

    def link_up(self, node: str) -> None:
        _ip("link", "set", "eth0", "up", netns=self.nodes[node].netns)

    def kill_gateway(self, gw: str) -> None:
        """Every process in ``gw``'s namespace dies at once (sshd, sessions, servers)."""
        host = self.gateways[gw]
        _kill_all(host.netns)
        if host.sshd is not None:
            host.sshd.wait(10)  # reap it (it was killed above)

    def revive_gateway(self, gw: str) -> None:
        """Start ``gw``'s sshd again after ``kill_gateway``."""
        host = self.gateways[gw]
        if host.sshd is None or host.sshd.poll() is not None:
            self._start_sshd(host)

    # -- teardown ------------------------------------------------------------

    def close(self) -> None:
        for host in [*self.gateways.values(), *self.nodes.values()]:
            if host.sshd is not None and host.sshd.poll() is None:
                host.sshd.terminate()
        for ns in self.namespaces:
            _kill_all(ns)
        for host in [*self.gateways.values(), *self.nodes.values()]:
            if host.sshd is not None:
                try:
                    host.sshd.wait(10)
                except subprocess.TimeoutExpired:
                    host.sshd.kill()
                    host.sshd.wait(10)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        for link in self._links:
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=30)
        for subnet in self._direct_routes:
            subprocess.run(["ip", "route", "del", subnet], capture_output=True, timeout=30)
        if self._route is not None:
            subprocess.run(
                ["ip", "route", "del", "unreachable", self._route], capture_output=True, timeout=30
            )
        for name in ("gc_thresh2", "gc_thresh3"):  # (lowered in this order: 2 <= 3 always)
            old = self._neigh_saved.pop(name, None)
            if old is not None:
                with open(f"/proc/sys/net/ipv4/neigh/default/{name}", "w") as f:
                    f.write(old)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kill_all(ns: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in namespace ``ns`` and wait (bounded) until none is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10
        )
        pids = [int(p) for p in out.stdout.split()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def build_network(workdir: str, groups: Sequence[Group]) -> Network:
    """Build the network; on any failure, tear down what was built and re-raise."""
    net = Network(workdir)
    try:
        return net.build(groups)
    except BaseException:
        net.close()
        raise


def netns_missing() -> Optional[str]:
    """Why namespaces cannot be built here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "ip (iproute2) is missing"
    return sshd_missing()


def require_netns() -> None:
    """Skip the calling test when namespaces cannot be built here; under ``CI=true``
    fail it instead (CI must run these tests)."""
    why = netns_missing()
    if why:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but the namespace tests cannot run: {why}", pytrace=False)
        pytest.skip(why)


def _free_prefix() -> str:
    """``10.X`` with no address of this host inside it (X in 200-250)."""
    out = subprocess.run(
        ["ip", "-4", "-o", "addr"], capture_output=True, text=True, timeout=10
    ).stdout
    used = {a.split(".")[1] for a in out.split() if a.startswith("10.")}
    for x in range(200 + secrets.randbelow(40), 251):
        if str(x) not in used:
            return f"10.{x}"
    raise RuntimeError("no free 10.X/16 prefix for the test network")


def _ip(*args: str, netns: Optional[str] = None) -> None:
    argv = ["ip", *args] if netns is None else ["ip", "-n", netns, *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


def _keygen(path: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "easycluster-netns", "-f", path],
        check=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    return _read(path + ".pub").strip()


def _write(path: str, text: str, mode: int = 0o644) -> str:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


TWO_GROUPS: List[Group] = [(["gw1"], ["node1", "node2"]), (["gw2", "gw3"], ["node3", "node4"])]


@pytest.fixture(scope="module")
def netns(tmp_path_factory) -> Iterator[Network]:
    """The two-group network of the module docstring, torn down after the module."""
    require_netns()
    with build_network(str(tmp_path_factory.mktemp("netns")), TWO_GROUPS) as net:
        yield net
