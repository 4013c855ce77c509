"""A private network for a sandbox: outbound connections only, never to the host or its neighbours.

A sandbox (bwrap) or container (local engine, network ``none``) gets its own network namespace.
:func:`attach` gives it a user-mode network stack, ``slirp4netns``, which makes the sandbox's
connections from the host side as ordinary sockets, with host loopback disabled. That alone would
still let a crew reach every non-loopback address of the host (and so the platform's ports) and
its neighbours; so before the stack exists, :func:`attach` fills the namespace's routing table
with ``unreachable`` routes for:

- every address of the host (all interfaces, read from ``/proc/net/fib_trie``) and the networks
  it is directly attached to (``/proc/net/route``);
- link-local ``169.254.0.0/16`` (cloud metadata), ``0.0.0.0/8``, multicast and reserved space,
  and the cloud metadata services outside link-local space (the IPv4 ones of
  ``crewyard.core.targets.METADATA``, which webhooks refuse too: Alibaba's, Azure's WireServer,
  Oracle Cloud Classic's);
- the private ranges (``10/8``, ``172.16/12``, ``192.168/16``, ``100.64/10`` …) and the stack's
  own gateway — except what the operator allows (:class:`NetworkPolicy`; host addresses,
  link-local and the metadata services can never be allowed, even inside an allowed range).

Routes, not a firewall: they need no netfilter module, and the crew cannot change them (no
capabilities in the namespace; raw sockets, which could bypass them, need ``CAP_NET_RAW`` too).
Because the routes exist before the interface does, there is no moment at which the crew has a
network without the filter. IPv6 is not offered (the stack runs without it), so there is no IPv6
route at all. DNS goes to the stack's resolver (``.3`` of its subnet), which forwards to the
host's resolvers; the sandbox's ``/etc/resolv.conf`` must name it (:attr:`NetworkPlan.resolv_conf`).

Every program started here runs with a fixed, minimal environment: nothing of a crew's. The
stack runs in a sandbox of its own (``--enable-sandbox``: its own mount namespace, no
capabilities); as root it is started in a mount namespace private all the way down
(``unshare --mount``), since its sandbox makes only ``/`` private before it detaches the old root,
which would otherwise unmount on the host every mount below a shared one (podman's network
namespaces under ``/run/netns``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec

from crewyard.core.targets import METADATA

IPv4 = ipaddress.IPv4Network
HOST_TOOL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
READY_TIMEOUT_S = 15.0

PRIVATE = tuple(
    IPv4(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT, used inside clouds
        "198.18.0.0/15",  # benchmarking; some clouds use it internally
        "192.0.0.0/24",
    )
)
NEVER = tuple(
    IPv4(n)
    for n in (
        "0.0.0.0/8",
        "169.254.0.0/16",  # link-local: cloud metadata endpoints
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
) + tuple(  # one source of truth with the webhooks' check; Azure's is a public address
    sorted(IPv4(f"{ip}/32") for ip in METADATA if isinstance(ip, ipaddress.IPv4Address))
)
_STACK_CANDIDATES = ("10.0.2.0/24", "10.213.87.0/24", "172.31.213.0/24", "192.168.213.0/24")


class NetworkError(Exception):
    """The private network could not be set up."""


class NetworkPolicy(msgspec.Struct, frozen=True, kw_only=True):
    #: Private networks (CIDRs) crews may reach: e.g. a package proxy on the company network.
    allow: tuple[str, ...] = ()


class NetworkPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`attach` will do, decided before the sandbox starts."""

    stack: str  # the user-mode stack's subnet, e.g. 10.0.2.0/24
    blocked: tuple[str, ...]

    @property
    def dns(self) -> str:
        return str(IPv4(self.stack)[3])

    @property
    def gateway(self) -> str:
        return str(IPv4(self.stack)[2])

    @property
    def resolv_conf(self) -> str:
        return f"nameserver {self.dns}\noptions edns0\n"


def host_addresses(fib_trie: str | None = None) -> list[IPv4]:
    """Every IPv4 address of this host (network namespace), each as a /32."""
    text = fib_trie if fib_trie is not None else Path("/proc/net/fib_trie").read_text()
    found: set[IPv4] = set()
    last = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("|--", "+--")):
            last = stripped[3:].strip().split(" ")[0]
        elif stripped.endswith("host LOCAL") and stripped.startswith("/32") and last:
            with contextlib.suppress(ValueError):
                found.add(IPv4(f"{last}/32"))
    # Loopback needs no route: the sandbox's own loopback answers it.
    return sorted(n for n in found if not n.is_loopback)


def connected_networks(route: str | None = None) -> list[IPv4]:
    """The networks this host is directly attached to (not its default route)."""
    text = route if route is not None else Path("/proc/net/route").read_text()
    found: set[IPv4] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        with contextlib.suppress(ValueError):
            dest = int(fields[1], 16).to_bytes(4, "little")
            mask = int(fields[7], 16).to_bytes(4, "little")
            prefix = bin(int.from_bytes(mask, "big")).count("1")
            if prefix:
                found.add(IPv4((ipaddress.IPv4Address(dest), prefix), strict=False))
    return sorted(n for n in found if not n.is_loopback)


def _minus(networks: Iterable[IPv4], holes: list[IPv4]) -> list[IPv4]:
    result = list(networks)
    for hole in holes:
        nxt: list[IPv4] = []
        for net in result:
            if hole.subnet_of(net) and hole != net:
                nxt.extend(net.address_exclude(hole))
            elif not (net.subnet_of(hole) or net == hole):
                nxt.append(net)
        result = nxt
    return result


def plan(
    policy: NetworkPolicy | None = None, *, fib_trie: str | None = None, route: str | None = None
) -> NetworkPlan:
    """The routes that keep a sandbox off the host and its networks, for this host, now."""
    policy = policy or NetworkPolicy()
    try:
        allowed = [IPv4(a, strict=False) for a in policy.allow]
    except ValueError as exc:
        raise NetworkError(f"allowed network {exc}") from None
    hosts = host_addresses(fib_trie)
    near = connected_networks(route)
    taken = [*hosts, *near, *allowed]
    stack = next((IPv4(c) for c in _STACK_CANDIDATES if not any(IPv4(c).overlaps(t) for t in taken)), None)
    if stack is None:
        raise NetworkError("no free subnet for the sandbox network stack (every candidate is in use here)")
    openable = _minus([*PRIVATE, *near], allowed)
    # NEVER is added after the allowed ranges are taken out: allowing 100.64.0.0/10 (a cloud's
    # internal network) must not open Alibaba's metadata service inside it.
    blocked = {*NEVER, *hosts, *openable, IPv4(f"{stack[2]}/32")}
    return NetworkPlan(stack=str(stack), blocked=tuple(str(n) for n in sorted(blocked)))


def missing_tools() -> list[str]:
    return [
        tool
        for tool in ("slirp4netns", "nsenter", "unshare", "ip")
        if not shutil.which(tool, path=HOST_TOOL_ENV["PATH"])
    ]


def probe() -> str | None:
    """Why a private network cannot be made here, or None."""
    missing = missing_tools()
    if missing:
        return f"{', '.join(missing)} not installed (Debian: apt-get install slirp4netns util-linux iproute2)"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing (the user-mode network stack needs it)"
    return None


def _tool(name: str) -> str:
    found = shutil.which(name, path=HOST_TOOL_ENV["PATH"])
    if not found:
        raise NetworkError(f"{name} is not installed")
    return found


class PrivateNetwork:
    """The running stack of one sandbox; :meth:`close` ends it.

    It also ends when the process that attached it dies: it exits when the write end of its exit
    pipe closes, which only this process holds (process-wide, unlike a parent-death signal,
    which would fire when the thread that started it ends).
    """

    def __init__(self, proc: subprocess.Popen[bytes], exit_w: int) -> None:
        self._proc = proc
        self._exit_w: int | None = exit_w

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self) -> None:
        if self._exit_w is not None:
            os.close(self._exit_w)  # slirp4netns exits when this pipe closes
            self._exit_w = None
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _namespace_args(ns_fds: dict[str, int]) -> list[str]:
    args = []
    if "user" in ns_fds:
        args += [f"--user=/proc/self/fd/{ns_fds['user']}", "--preserve-credentials"]
    return [*args, f"--net=/proc/self/fd/{ns_fds['net']}"]


def _loopback_up(pid: int, timeout_s: float = 10.0) -> None:
    """Wait until the namespace's own set-up (bwrap brings up its loopback) is done.

    Routing changes made while bwrap is still configuring the loopback over netlink make it fail
    now and then ("loopback: Failed RTM_NEWADDR", measured a few times in a hundred concurrent
    starts); ``127.0.0.1`` appears in the namespace's routing table once it is finished.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if "127.0.0.1" in Path(f"/proc/{pid}/net/fib_trie").read_text():
                return
        except OSError:
            return  # gone: opening its namespace will say so
        time.sleep(0.005)


def attach_blocking(pid: int, network: NetworkPlan) -> PrivateNetwork:
    """Filter, then connect, the network namespace of process ``pid`` (blocking: use a thread)."""
    _loopback_up(pid)
    ns_fds: dict[str, int] = {}
    try:
        # Open the namespaces once: the pid could be reused after the process dies, an fd cannot.
        ns_fds["net"] = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        if os.geteuid() != 0:  # the sandbox's namespaces belong to a user namespace of ours
            ns_fds["user"] = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        for fd in ns_fds.values():
            os.close(fd)
        raise NetworkError(f"the sandbox's network namespace is gone: {exc}") from exc
    try:
        if os.fstat(ns_fds["net"]).st_ino == os.stat("/proc/self/ns/net").st_ino:
            # Its routes would be this host's: never filter (and so cut off) the host itself.
            raise NetworkError(f"process {pid} has no network namespace of its own")
        _add_routes(network, ns_fds)
        return _start_stack(network, ns_fds)
    finally:
        for fd in ns_fds.values():
            os.close(fd)


def _add_routes(network: NetworkPlan, ns_fds: dict[str, int]) -> None:
    batch = "".join(f"route add unreachable {net}\n" for net in network.blocked)
    res = subprocess.run(
        [_tool("nsenter"), *_namespace_args(ns_fds), "--", _tool("ip"), "-batch", "-"],
        input=batch.encode(),
        capture_output=True,
        env=HOST_TOOL_ENV,
        pass_fds=tuple(ns_fds.values()),
        timeout=30,
        check=False,
    )
    if res.returncode != 0:
        raise NetworkError(
            f"filtering the sandbox's network failed: {res.stderr.decode(errors='replace').strip()}"
        )


def _start_stack(network: NetworkPlan, ns_fds: dict[str, int]) -> PrivateNetwork:
    ready_r, ready_w = os.pipe()
    exit_r, exit_w = os.pipe()
    # As root, in mounts private all the way down (see the module's docstring: its own sandbox
    # would unmount, on the host, every mount below a shared one).
    private_mounts = []
    if os.geteuid() == 0:
        private_mounts = [_tool("unshare"), "--mount", "--propagation", "private", "--"]
    args = [
        *private_mounts,
        _tool("slirp4netns"),
        "--configure",
        "--mtu=65520",
        "--disable-host-loopback",
        f"--cidr={network.stack}",
        "--netns-type=path",
        "--enable-sandbox",
        "--enable-seccomp",
        f"--ready-fd={ready_w}",
        f"--exit-fd={exit_r}",
    ]
    if "user" in ns_fds:
        args.append(f"--userns-path=/proc/self/fd/{ns_fds['user']}")
    args += [f"/proc/self/fd/{ns_fds['net']}", "tap0"]
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed below; its diagnostics, read only when it fails to come up
    try:
        proc = subprocess.Popen(
            args,
            env=HOST_TOOL_ENV,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            pass_fds=(ready_w, exit_r, *ns_fds.values()),
            start_new_session=True,
        )
    except OSError as exc:
        errors.close()
        for fd in (ready_r, ready_w, exit_r, exit_w):
            os.close(fd)
        raise NetworkError(f"cannot start slirp4netns: {exc}") from exc
    os.close(ready_w)
    os.close(exit_r)
    try:
        readable, _, _ = select.select([ready_r], [], [], READY_TIMEOUT_S)
        ok = bool(readable) and os.read(ready_r, 1) == b"1"
    finally:
        os.close(ready_r)
    stack = PrivateNetwork(proc, exit_w)
    with errors:
        if not ok:
            stack.close()
            errors.seek(0)
            detail = errors.read().decode(errors="replace").strip()
            raise NetworkError(
                f"the sandbox's network stack did not come up: {detail[-500:] or 'no reason given'}"
            )
    return stack


async def attach(pid: int, network: NetworkPlan) -> PrivateNetwork:
    return await asyncio.to_thread(attach_blocking, pid, network)
