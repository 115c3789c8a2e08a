"""A server that cannot listen says which setting to change: the port in use, a host
that is no address of this machine or does not resolve."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.ports import free_port
from watchkeeper.listen_address import CannotListen, ListenAddress


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
