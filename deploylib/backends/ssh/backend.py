"""``SSHBackend``: the ``Backend`` of an SSH host, tying together its one connection
(``HostConnection``) and the commands run on it (``Channels``)."""

from __future__ import annotations

import shlex
import threading
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

from deploylib.backends.base import Backend, OutputSink
from deploylib.backends.ssh.channels import Channels
from deploylib.backends.ssh.connection import HostConnection
from deploylib.backends.ssh.failures import quiet_paramiko
from deploylib.backends.ssh.host_keys import KnownHostsFile
from deploylib.backends.ssh.shell import ENV_PRELUDE, env_line
from deploylib.commands import Command, Result, Upload
from deploylib.config import SSHSettings
from deploylib.digests import file_chunks, file_digest
from deploylib.hosts import Host
from deploylib.remote import gnu
from deploylib.secrets import reveal


class SSHBackend(Backend):
    def __init__(
        self,
        host: Host,
        settings: SSHSettings,
        *,
        project_dir: Path,
        default_timeout: float,
        known: KnownHostsFile | None = None,
        handshakes: threading.Semaphore | None = None,
    ) -> None:
        super().__init__(host)
        quiet_paramiko()
        self.settings = settings
        self.project_dir = project_dir
        self.default_timeout = default_timeout
        # only what deploy.toml says explicitly is passed on: the rest comes from ~/.ssh/config
        # (User, Port), then the defaults (your user name, 22)
        self.user = host.user or settings.user
        self.port = host.port or (settings.port if "port" in settings.model_fields_set else None)
        self.connection = HostConnection(
            host.address,
            user=self.user,
            port=self.port,
            settings=settings,
            project_dir=project_dir,
            known=known,
            handshakes=handshakes,
        )
        self.channels = Channels(self.connection, halted=lambda: self._halted)

    @property
    def known_hosts(self) -> Path:
        return self.connection.known_hosts

    def resolved(self) -> dict[str, object]:
        """The settings this host is reached with (``check --verbose``); connects nothing."""
        return self.connection.opener.resolved(self.host.address, user=self.user, port=self.port)

    def run(self, command: Command) -> Result:
        return self._run(command, None)

    def _stream(self, command: Command, sink: OutputSink) -> Result:
        return self._run(command, sink)

    def _run(self, command: Command, sink: OutputSink | None) -> Result:
        line = command.full_line
        stdin = command.stdin_bytes()
        if command.env:
            try:
                lines = [env_line(k, reveal(v)) for k, v in command.env.items()]
            except ValueError as exc:
                return Result(2, stderr=str(exc))
            block = "".join(line + "\n" for line in lines) + "\n"
            line = ENV_PRELUDE + line
            stdin = block.encode() + (stdin or b"")
        chunks: Iterator[bytes] | bytes = stdin or b""
        if command.stdin_file is not None:
            chunks = chain([stdin] if stdin else [], file_chunks(command.stdin_file))
        return self.channels.exec(line, chunks, command.timeout or self.default_timeout, sink)

    def upload(self, upload: Upload) -> Result:
        """Stream the file through ``cat`` on an exec channel; check its sha256 on arrival
        against the file's, hashed once for all hosts."""
        q = shlex.quote
        temporary = f"{upload.remote}.part"
        parent = str(Path(upload.remote).parent)
        script = (
            f"mkdir -p {q(parent)} && cat > {q(temporary)} && chmod {upload.mode:o} {q(temporary)}"
            f" && {gnu.sha256(temporary)} && mv -f {q(temporary)} {q(upload.remote)}"
        )
        try:
            expected = file_digest(upload.local)
        except OSError as exc:
            return Result(1, stderr=f"upload to {upload.remote}: {exc}")

        chunks = file_chunks(upload.local)
        result = self.channels.exec(script, chunks, upload.timeout or self.default_timeout)
        if result.ok and not result.stdout.startswith(expected):
            return Result(1, result.stdout, f"upload to {upload.remote}: sha256 mismatch")
        return result

    def abort(self) -> None:
        """Ctrl-C: every running command stops its process group on the host, then returns as
        interrupted; the connection stays, for the clean-up."""
        self.channels.abort()

    def open_ahead(self) -> None:
        self.connection.open_ahead()

    def close(self) -> None:
        self.connection.close()
