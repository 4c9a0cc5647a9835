"""Ports for a stack beside other stacks: distinct, free, and not where the kernel puts clients."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sandbox import stack
from sandbox.stack import free_ports, port_free


def ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = free_ports(20)

    assert len(set(ports)) == 20
    assert all(1024 < port < ephemeral_low() for port in ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = next(
        port
        for port in iter(lambda: free_ports(1)[0], None)
        if port_free("127.0.0.1", port - 1) and port_free("127.0.0.1", port + 1)
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", taken))
        busy.listen()
        # Only three candidates, the busy one among them: the other two must come back.
        monkeypatch.setattr(stack, "_LOWEST_CHOSEN_PORT", taken - 1)
        monkeypatch.setattr(stack, "_ephemeral_low", lambda: taken + 2)
        for _ in range(20):
            assert sorted(free_ports(2)) == [taken - 1, taken + 1]
        with pytest.raises(stack.StackError, match="no 3 free ports"):
            free_ports(3)
