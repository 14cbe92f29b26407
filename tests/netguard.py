"""A network guard for tests: records every attempt to reach another host, and refuses it.

Loopback and Unix sockets stay open (the HTTP service's tests, the 2-process gloo run). Anything
else — a TCP/UDP `connect` to a non-loopback address, or a name lookup of a non-local host — is
recorded in `attempts` and refused with an `OSError`, the way a dead network answers. Code that
catches that error still leaves the record behind, so the test fails at teardown
(`tests/conftest.py`) instead of passing while a download was tried.

The same guard runs inside subprocesses: `tests/netguard_site/sitecustomize.py` installs it when
its folder is on `PYTHONPATH` and appends each attempt to the file `GRAFTKIT_NETGUARD_LOG` names.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _is_local_host(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).split("%")[0].strip("[]").lower()
    if host in _LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def _describe(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return repr(address)


class NetworkGuard:
    """Patches `socket.socket.connect` / `connect_ex` and `socket.getaddrinfo` until `uninstall`."""

    def __init__(self, on_attempt: Callable[[str], None] | None = None) -> None:
        self.attempts: list[str] = []
        self.expected = False
        self._on_attempt = on_attempt
        self._saved: dict[str, Any] = {}

    def expect(self) -> None:
        """This test tries the network on purpose (and asserts what happens): don't fail it."""
        self.expected = True

    def _record(self, what: str) -> None:
        self.attempts.append(what)
        if self._on_attempt is not None:
            self._on_attempt(what)

    def install(self) -> "NetworkGuard":
        guard = self
        connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
        self._saved = {"connect": connect, "connect_ex": connect_ex, "getaddrinfo": getaddrinfo}

        def allowed(sock: socket.socket, address: Any) -> bool:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                return True  # Unix sockets, netlink: not the network
            return isinstance(address, tuple) and _is_local_host(address[0])

        def guarded_connect(sock: socket.socket, address: Any) -> None:
            if not allowed(sock, address):
                guard._record(f"connect {_describe(address)}")
                raise ConnectionRefusedError(f"test network guard: connection to {_describe(address)} refused")
            return connect(sock, address)

        def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
            if not allowed(sock, address):
                guard._record(f"connect {_describe(address)}")
                raise ConnectionRefusedError(f"test network guard: connection to {_describe(address)} refused")
            return connect_ex(sock, address)

        def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if not _is_local_host(host):
                guard._record(f"lookup {host}")
                raise socket.gaierror(socket.EAI_NONAME, f"test network guard: lookup of {host} refused")
            return getaddrinfo(host, *args, **kwargs)

        socket.socket.connect = guarded_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = guarded_getaddrinfo  # type: ignore[assignment]
        return self

    def uninstall(self) -> None:
        if self._saved:
            socket.socket.connect = self._saved["connect"]  # type: ignore[method-assign]
            socket.socket.connect_ex = self._saved["connect_ex"]  # type: ignore[method-assign]
            socket.getaddrinfo = self._saved["getaddrinfo"]  # type: ignore[assignment]
            self._saved = {}
