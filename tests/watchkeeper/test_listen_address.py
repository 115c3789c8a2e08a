"""A server that cannot listen says which setting to change: the port in use, a host
that is no address of this machine or does not resolve."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator

import pytest

from tests.ports import free_port
from watchkeeper.listen_address import CannotListen, ListenAddress, http_url, reachable


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        port = free_port()
        listener.bind(("127.0.0.1", port))
        listener.listen()
        yield port


def _monitor(host: str, port: int) -> ListenAddress:
    return ListenAddress(host, port, "monitor_host", "monitor_port")


def test_a_port_in_use_names_the_port_setting(taken_port: int) -> None:
    with pytest.raises(CannotListen) as refused:
        _monitor("127.0.0.1", taken_port).check_free()

    assert refused.value.message == (
        f"cannot listen on 127.0.0.1:{taken_port} (WATCHKEEPER_MONITOR_PORT): the port is in use"
    )
    assert "set WATCHKEEPER_MONITOR_PORT to a free port" in refused.value.todo


def test_an_address_of_another_host_names_the_host_setting() -> None:
    with pytest.raises(CannotListen) as refused:
        _monitor("192.0.2.1", free_port()).check_free()  # TEST-NET-1: never local

    assert "'192.0.2.1' (WATCHKEEPER_MONITOR_HOST) is not an address of this host" in (
        refused.value.message
    )
    assert refused.value.todo.startswith("set WATCHKEEPER_MONITOR_HOST")


def test_a_host_that_does_not_resolve_names_the_host_setting() -> None:
    unresolved = socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    refused = ListenAddress("nowhere.invalid", 8000, "host", "port").refusal(unresolved)

    assert refused.message == (
        "cannot listen on nowhere.invalid:8000: the host 'nowhere.invalid' "
        "(WATCHKEEPER_HOST) does not resolve: Name or service not known"
    )
    assert refused.todo.startswith("set WATCHKEEPER_HOST")


def test_a_free_port_passes() -> None:
    _monitor("127.0.0.1", free_port()).check_free()


@pytest.mark.parametrize(
    ("host", "url", "called_at"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("localhost", "http://localhost:8000", "http://localhost:8000"),
        ("::1", "http://[::1]:8000", "http://[::1]:8000"),
        ("fd00::5", "http://[fd00::5]:8000", "http://[fd00::5]:8000"),
        ("0.0.0.0", "http://0.0.0.0:8000", "http://127.0.0.1:8000"),
        ("::", "http://[::]:8000", "http://127.0.0.1:8000"),
    ],
)
def test_an_ipv6_host_is_bracketed_in_a_url(host: str, url: str, called_at: str) -> None:
    """`http://::1:8000` is no URL: the CLI printed it for WATCHKEEPER_HOST=::1."""
    assert http_url(host, 8000) == url
    assert http_url(reachable(host), 8000) == called_at


def test_a_refusal_writes_an_ipv6_host_bracketed() -> None:
    in_use = OSError(errno.EADDRINUSE, "Address already in use")

    refused = ListenAddress("::1", 8000, "host", "port").refusal(in_use)

    assert refused.message.startswith("cannot listen on [::1]:8000 (WATCHKEEPER_PORT)")
