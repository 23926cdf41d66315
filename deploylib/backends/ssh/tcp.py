"""The TCP socket under a connection, set for request/response traffic before the handshake, and
the ciphers offered on it.

Two delays of about 40 ms each come from TCP itself, not from SSH, on a link as fast as
loopback:
- Nagle's algorithm holds this side's small packet while an earlier one is unacknowledged, and
  the peer delays its ACK: every round of the handshake and of a command's exchange waits.
  ``TCP_NODELAY`` before the first byte removes it (connecting went from about 70 ms to 24 ms).
- OpenSSH's sshd keeps Nagle's algorithm on for sessions without a terminal and, once
  authenticated, sends a message that needs no answer (its host keys). Its reply to the first
  request then waits for this side's delayed ACK of that message: the first command after
  connecting took about 45 ms more than the next. An ACK sent as soon as data arrived
  (``TCP_QUICKACK``, set again after every read: Linux clears it by itself) removes that.

Only plain TCP sockets are changed: a jump host's channel or a ProxyCommand is left as it is.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import paramiko

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class QuickAckSocket(socket.socket):
    """A TCP socket that acknowledges what it read at once, instead of after the delayed-ACK
    timer."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        if _QUICKACK is not None:
            with contextlib.suppress(OSError):
                self.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        return data


def tuned(sock: Any) -> Any:
    """``sock`` with ``TCP_NODELAY`` and quick ACKs, if it is a connected TCP socket (the same
    file descriptor, in a ``QuickAckSocket``); anything else unchanged."""
    if not isinstance(sock, socket.socket) or isinstance(sock, QuickAckSocket):
        return sock
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return sock
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        return sock
    timeout = sock.gettimeout()
    quick = QuickAckSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    quick.settimeout(timeout)
    return quick


#: offered first: AES-GCM authenticates each packet within the cipher. With the CTR ciphers
#: paramiko offers first, a MAC is computed for every packet and checked byte by byte in
#: Python, which made up most of this machine's CPU time per host (a deploy exchanges some
#: thousand small packets with a fleet). The server picks the first it supports, so one without
#: them gets the others, in paramiko's order.
AEAD_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def transport_factory(sock: Any, **kwargs: Any) -> paramiko.Transport:
    """paramiko's ``transport_factory``: the client's transport over the tuned socket,
    offering AES-GCM first."""
    transport = paramiko.Transport(tuned(sock), **kwargs)
    options = transport.get_security_options()
    offered = tuple(options.ciphers)
    options.ciphers = tuple(c for c in AEAD_CIPHERS if c in offered) + tuple(
        c for c in offered if c not in AEAD_CIPHERS
    )
    return transport
