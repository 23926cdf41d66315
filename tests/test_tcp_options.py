"""Specifies deploylib.backends.ssh.tcp: the TCP socket under a connection is set for
request/response traffic (TCP_NODELAY, quick ACKs) before the SSH handshake; anything that is
not a plain TCP socket (a jump host's channel, a ProxyCommand, a Unix socket) is left alone;
AES-GCM is offered first, the other ciphers after it."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import paramiko
import pytest

from deploylib.backends.ssh.tcp import AEAD_CIPHERS, QuickAckSocket, transport_factory, tuned
from tests.conftest import Fleet

FleetOf = Callable[[int], Fleet]


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname(), timeout=5)
        peer, _ = server.accept()
        try:
            yield client, peer
        finally:
            client.close()
            peer.close()


def test_a_tcp_socket_is_tuned_in_place(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, peer = tcp_pair
    client.settimeout(2.5)
    descriptor = client.fileno()
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0

    quick = tuned(client)

    assert isinstance(quick, QuickAckSocket)
    assert quick.fileno() == descriptor  # the same connection, not a new one
    assert client.fileno() == -1  # the old object no longer owns it
    assert quick.gettimeout() == 2.5
    assert quick.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    peer.sendall(b"banner\r\n")
    assert quick.recv(64) == b"banner\r\n"
    quick.sendall(b"reply")
    assert peer.recv(64) == b"reply"
    assert tuned(quick) is quick  # tuned once
    quick.close()


def test_what_is_not_a_tcp_socket_is_left_alone() -> None:
    left, right = socket.socketpair()
    with left, right:
        assert tuned(left) is left and not isinstance(left, QuickAckSocket)
        left.sendall(b"x")
        assert right.recv(1) == b"x"  # still usable: nothing was detached
    channel_like = object()  # a jump host's channel or a ProxyCommand
    assert tuned(channel_like) is channel_like


def test_aes_gcm_is_offered_first_and_nothing_else_is_dropped() -> None:
    left, right = socket.socketpair()
    with left, right:
        transport = transport_factory(left)
        offered = list(transport.get_security_options().ciphers)
        assert offered[: len(AEAD_CIPHERS)] == list(AEAD_CIPHERS)
        assert sorted(offered) == sorted(paramiko.Transport._preferred_ciphers)


@pytest.mark.slow
def test_a_connection_to_a_real_sshd_runs_over_the_tuned_socket(fleet_of: FleetOf) -> None:
    from deploylib.commands import Command

    backend = fleet_of(1).backend()
    try:
        for word in ("one", "two"):
            result = backend.run(Command(f"echo {word}"))
            assert result.ok and result.stdout == f"{word}\n"
        transport = backend.connection.transport()
        assert transport.remote_cipher == transport.local_cipher == AEAD_CIPHERS[0]
        sock = transport.sock
        assert isinstance(sock, QuickAckSocket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        backend.close()
