"""Where a server listens, and the settings that say so.

A server that cannot listen (the port taken, a host that is no address of this machine
or does not resolve) is reported naming the host or port setting of its component: a
bare ``OSError`` passed for a file problem ("check the path and its permissions").

Where a host is written into an address (a URL, gunicorn's ``bind``), an IPv6 literal is
bracketed: ``http://::1:8000`` is no URL, and gunicorn reads ``::1:8000`` as no port.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from watchkeeper.errors import WatchkeeperError
from watchkeeper.settings import SETTINGS

WILDCARD_HOSTS = ("0.0.0.0", "::", "")
"""Hosts that mean every interface: a server listens there, but no one calls it there."""


def url_host(host: str) -> str:
    """``host`` as an address spells it before ``:port``: an IPv6 literal in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def reachable(host: str) -> str:
    """The host to call a server bound to ``host`` at, as a URL spells it: this host's
    loopback for a wildcard."""
    return "127.0.0.1" if host in WILDCARD_HOSTS else url_host(host)


def http_url(host: str, port: int) -> str:
    """``http://host:port``, an IPv6 ``host`` bracketed (``http://[::1]:8000``)."""
    return f"http://{url_host(host)}:{port}"


class CannotListen(WatchkeeperError):
    """A server cannot listen where its settings say; ``todo`` says which to change."""

    def __init__(self, message: str, todo: str) -> None:
        super().__init__(message)
        self.todo = todo


@dataclass(frozen=True)
class ListenAddress:
    """A host and port, with the flat names of the settings they come from."""

    host: str
    port: int
    host_setting: str
    port_setting: str

    @property
    def host_variable(self) -> str:
        return SETTINGS[self.host_setting].variable

    @property
    def port_variable(self) -> str:
        return SETTINGS[self.port_setting].variable

    def refusal(self, exc: OSError) -> CannotListen:
        """What to tell the user when listening here failed with ``exc``."""
        where = f"cannot listen on {url_host(self.host)}:{self.port}"
        host, port = self.host_variable, self.port_variable
        if isinstance(exc, socket.gaierror):
            return CannotListen(
                f"{where}: the host {self.host!r} ({host}) does not resolve: {exc.strerror}",
                f"set {host} to an address of this host (127.0.0.1, or 0.0.0.0 for all)",
            )
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            return CannotListen(
                f"{where} ({port}): the port is in use",
                f"stop what listens there, or set {port} to a free port",
            )
        if exc.errno == errno.EADDRNOTAVAIL:
            return CannotListen(
                f"{where}: {self.host!r} ({host}) is not an address of this host: {reason}",
                f"set {host} to an address of this host (127.0.0.1, or 0.0.0.0 for all)",
            )
        if exc.errno == errno.EACCES:
            return CannotListen(
                f"{where} ({port}): {reason}",
                f"set {port} to a port above 1023, or run with the right to bind below it",
            )
        return CannotListen(f"{where}: {reason}", f"check {host} and {port}")

    def check_free(self) -> None:
        """Raise :class:`CannotListen` if a server could not listen here now, binding as
        gunicorn does (IPv6 for an IPv6 literal, ``SO_REUSEADDR``). Another process may
        still take the port before the server binds it: the server then reports that
        itself; this check only spares the common case a page of its errors."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((self.host, self.port))
        except OSError as exc:
            raise self.refusal(exc) from exc
