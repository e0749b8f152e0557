"""Free-port helper."""

from __future__ import annotations

import socket

import pytest

from cascade.serving.ports import free_port, free_ports, port_in_use


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_free_port_is_a_valid_port() -> None:
    assert 1024 <= free_port() <= 65535


def test_free_ports_rejects_non_positive_count() -> None:
    with pytest.raises(ValueError, match="count"):
        free_ports(0)


def test_port_in_use_sees_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_in_use(port)
    assert not port_in_use(port)
