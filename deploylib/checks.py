"""Health checks for ``verify``: ``http``, ``tcp``, ``command`` and ``prometheus``.

A check only describes itself: it builds an operation from a step's context. Running and
retrying them is ``check_retries``'s.
"""

from __future__ import annotations

import math
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deploylib.commands import Operation, Probe
from deploylib.errors import ConfigError

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
            redact=ctx.env.redactor.redact,
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


@dataclass(frozen=True)
class PrometheusCheck(Check):
    url: str
    query: str
    maximum: float | None = None
    minimum: float | None = None
    on_no_data: str = "fail"
    timeout: float = 5.0

    def operation(self, ctx: StepContext) -> Operation:
        return Probe(
            "prometheus",
            url=ctx.text(self.url),
            query=ctx.text(self.query),
            maximum=self.maximum,
            minimum=self.minimum,
            on_no_data=self.on_no_data,
            timeout=self.timeout,
            description="check",
            redact=ctx.env.redactor.redact,
        )

    def templates(self) -> Iterable[str]:
        return [self.url, self.query]


def http(
    url: str, *, status: int | None = 200, contains: str | None = None, timeout: float = 5.0
) -> Check:
    """GET ``url`` from this machine; pass on ``status`` and a body holding ``contains``."""
    where = f"http({url!r})"
    _check_url(where, url)
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
    ):
        raise ConfigError(f"{where}: status={status!r}: an HTTP status, 100 to 599 (or None)")
    if contains is not None and not isinstance(contains, str):
        raise ConfigError(f"{where}: contains={contains!r}: text the body holds")
    return HttpCheck(url, status, contains, _seconds(where, timeout))


def tcp(port: int | str, *, host: str = "{host_address}", timeout: float = 5.0) -> Check:
    """Connect to ``host:port`` from this machine."""
    where = f"tcp({port!r})"
    number = int(port) if isinstance(port, str) and port.isdigit() else port
    if isinstance(number, str) and "{" in number:
        pass  # a placeholder ({port}): its value is a port
    elif isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
        raise ConfigError(f"{where}: a port, 1 to 65535, or a placeholder such as {{port}}")
    if not isinstance(host, str) or not host:
        raise ConfigError(f"{where}: host={host!r}: a host name or address")
    return TcpCheck(port, host, _seconds(where, timeout))


def command(script: str, *, cwd: str | None = None, timeout: float = 30.0) -> Check:
    """Run ``script`` on the target; pass on exit status 0."""
    where = f"command({script!r})"
    if not isinstance(script, str) or not script.strip():
        raise ConfigError(f"{where}: a shell command")
    return CommandCheck(script, cwd, _seconds(where, timeout))


def prometheus(
    url: str,
    query: str,
    *,
    max: float | None = None,
    min: float | None = None,
    on_no_data: str = "fail",
    timeout: float = 5.0,
) -> Check:
    """Ask the Prometheus server at ``url`` (its base URL) for ``query``, an instant query
    (``GET {url}/api/v1/query``), from this machine; pass when every sample of the result is
    ``<= max`` and ``>= min`` (NaN never is). An empty result fails, unless ``on_no_data`` is
    ``"pass"``. ``url`` and ``query`` take placeholders (``{host}``, ``{release}``, ...) and
    ``${VAR}``; PromQL's label matchers (``{status=~"5.."}``) are left as written."""
    if not isinstance(url, str) or not (url.startswith(("http://", "https://")) or "${" in url):
        raise ConfigError(
            f"prometheus(url={url!r}): the Prometheus server's base URL, http:// or https://"
        )
    if not isinstance(query, str) or not query.strip():
        raise ConfigError(f"prometheus(query={query!r}): a PromQL query")
    where = f"prometheus({url!r}, {query!r})"
    if max is None and min is None:
        raise ConfigError(f"{where}: give max= or min= (or both): the bound every sample keeps")
    maximum, minimum = _bound(where, "max", max), _bound(where, "min", min)
    if maximum is not None and minimum is not None and minimum > maximum:
        raise ConfigError(f"{where}: min={min!r} is above max={max!r}: no value could pass")
    if on_no_data not in ("fail", "pass"):
        raise ConfigError(f'{where}: on_no_data is "fail" or "pass", not {on_no_data!r}')
    return PrometheusCheck(url, query, maximum, minimum, on_no_data, _seconds(where, timeout))


#: the longest a check's one attempt may take
LONGEST_CHECK = 3600.0


def seconds(where: str, name: str, value: object, longest: float) -> float:
    """``value`` as a number of seconds above 0 and at most ``longest``, or a ``ConfigError``
    naming ``where`` and ``name`` (a check's timeout, a step's timeout or deadline)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= longest:
        raise ConfigError(
            f"{where}: {name}={value!r}: a number of seconds > 0, at most {longest:g}"
        )
    return float(value)


def _seconds(where: str, timeout: object) -> float:
    return seconds(where, "timeout", timeout, LONGEST_CHECK)


def _check_url(where: str, url: object) -> None:
    """An http(s) URL; one without placeholders or variables is checked whole (its host in
    brackets closed, its port a number up to 65535), one with them for its scheme only."""
    if not isinstance(url, str):
        raise ConfigError(f"{where}: a URL, http:// or https://")
    if url.startswith(("${", "{")):
        return  # the whole start is filled in later
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: the URL starts with http:// or https://")
    if "{" in url or "$" in url:
        return
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise ConfigError(f"{where}: not a URL this check can GET ({exc})") from None
    if not parts.hostname:
        raise ConfigError(f"{where}: the URL names no host")


def _bound(where: str, name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(f"{where}: {name}={value!r}: a bound is a number")
    return float(value)


__all__ = ["Check", "PrometheusCheck", "command", "http", "prometheus", "tcp"]
