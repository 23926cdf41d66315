"""Health checks for ``verify``: ``http``, ``tcp`` and ``command``.

A check only describes itself: it builds an operation from a step's context. Running and
retrying them is ``check_retries``'s.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deploylib.commands import Operation, Probe

if TYPE_CHECKING:
    from deploylib.context import StepContext


class Check(ABC):
    @abstractmethod
    def operation(self, ctx: StepContext) -> Operation: ...

    @abstractmethod
    def templates(self) -> Iterable[str]: ...


@dataclass(frozen=True)
class HttpCheck(Check):
    url: str
    status: int | None = 200
    contains: str | None = None
    timeout: float = 5.0

    def operation(self, ctx: StepContext) -> Operation:
        return Probe(
            "http",
            url=ctx.text(self.url),
            status=self.status,
            contains=ctx.text(self.contains) if self.contains is not None else None,
            timeout=self.timeout,
            description="check",
        )

    def templates(self) -> Iterable[str]:
        return [self.url, *([self.contains] if self.contains else [])]


@dataclass(frozen=True)
class TcpCheck(Check):
    port: int | str
    host: str = "{host_address}"
    timeout: float = 5.0

    def operation(self, ctx: StepContext) -> Operation:
        return Probe(
            "tcp",
            host=ctx.text(self.host),
            port=int(ctx.text(str(self.port))),
            timeout=self.timeout,
            description="check",
        )

    def templates(self) -> Iterable[str]:
        return [self.host, str(self.port)]


@dataclass(frozen=True)
class CommandCheck(Check):
    script: str
    cwd: str | None = None
    timeout: float = 30.0

    def operation(self, ctx: StepContext) -> Operation:
        return ctx.command(self.script, cwd=self.cwd, timeout=self.timeout, description="check")

    def templates(self) -> Iterable[str]:
        return [self.script, *([self.cwd] if self.cwd else [])]


def http(
    url: str, *, status: int | None = 200, contains: str | None = None, timeout: float = 5.0
) -> Check:
    """GET ``url`` from this machine; pass on ``status`` and a body holding ``contains``."""
    return HttpCheck(url, status, contains, timeout)


def tcp(port: int | str, *, host: str = "{host_address}", timeout: float = 5.0) -> Check:
    """Connect to ``host:port`` from this machine."""
    return TcpCheck(port, host, timeout)


def command(script: str, *, cwd: str | None = None, timeout: float = 30.0) -> Check:
    """Run ``script`` on the target; pass on exit status 0."""
    return CommandCheck(script, cwd, timeout)


__all__ = ["Check", "command", "http", "tcp"]
