"""Run operations on an SSH host: one Fabric connection per host, reused for everything.

Every remote call has a deadline:

* connecting: ``connect_timeout`` for TCP, the banner, the key exchange and authentication,
  retried (with jitter, a few times) only while nothing has run on the host yet;
* jump hosts (``ProxyJump`` in ~/.ssh/config): each hop is connected here with the same
  deadlines, key file and host-key policy as the host, and the next hop is reached through a
  ``direct-tcpip`` channel opened within ``channel_timeout``;
* opening a channel: ``channel_timeout`` (paramiko would wait an hour);
* a command: its own timeout, else the environment's ``command_timeout``; once its exit status
  has arrived, its output is awaited ``OUTPUT_GRACE`` seconds more (a background process it
  started may hold the output open), then the result comes back with a ``note``;
* a dead link: keepalive requests that expect a reply go out every ``alive_interval`` seconds;
  with no reply for ``alive_interval * alive_count_max`` seconds the connection is closed and
  every operation on it fails at once, as OpenSSH's ServerAliveInterval/ServerAliveCountMax do.

Secrets never reach a command line: the variables of a command travel through the channel's
stdin, read by a fixed prelude, ahead of the command's own stdin. Host keys — of the host and
of every jump host — are checked against ``known_hosts``; an unknown key is refused unless
``accept_new`` is set, a changed key always. User and port: the host entry's, else the
environment's ``[ssh]`` ones when set, else ~/.ssh/config's, else your user name and 22.
paramiko's own log records are kept off the terminal; the error messages say what happened.

The modules, lowest first:

    failures     where a connection goes (``Endpoint``), why opening it failed, whether that is
                 worth another attempt, and the message naming the host or jump host
    host_keys    the host-key policy every hop is opened under (known_hosts, ``accept_new``)
    keepalive    ``AliveMonitor``: keepalives that expect a reply, and the watchdog
    opening      Fabric connections with deploylib's deadlines and key file, opened hop by hop
                 through the jump hosts of ProxyJump
    connection   ``HostConnection``: the one connection to a host, retried only while
                 connecting, watched by keepalives, never re-opened once used
    shell        what the remote shell runs around a command: the environment prelude, the
                 pid line (``RemoteShell``), the script that stops its process group
    channels     ``Channels``: each command on a channel of its own, stdin fed, output read
                 under its deadline, stopped on the host when given up on or aborted
    backend      ``SSHBackend``, tying them together behind the ``Backend`` interface
"""

from __future__ import annotations

from deploylib.backends.ssh.backend import SSHBackend
from deploylib.backends.ssh.host_keys import TrustOnFirstUse
from deploylib.backends.ssh.keepalive import AliveMonitor
from deploylib.backends.ssh.shell import ENV_PRELUDE, env_line, stop_group_script

__all__ = [
    "ENV_PRELUDE",
    "AliveMonitor",
    "SSHBackend",
    "TrustOnFirstUse",
    "env_line",
    "stop_group_script",
]
