"""The per-target context a step sees: which release, where, with which placeholders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deploylib import placeholders
from deploylib.commands import Command
from deploylib.errors import ConfigError
from deploylib.hosts import Host
from deploylib.locks import INHERITED_LOCK
from deploylib.remote import images
from deploylib.remote.layout import Layout
from deploylib.remote.lock import guard_for
from deploylib.secrets import Secret, reveal
from deploylib.sudo import as_user

if TYPE_CHECKING:
    from deploylib.config import Environment

LOOPBACK = "127.0.0.1"
#: the env-file variables that hold the registry's credentials (docs/containers.md)
REGISTRY_USERNAME, REGISTRY_PASSWORD = "REGISTRY_USERNAME", "REGISTRY_PASSWORD"


@dataclass(frozen=True)
class StepContext:
    """One target within one deploy. Steps read it; they never run anything themselves."""

    env: Environment
    host: Host
    release: str
    revision: str
    artifact: str
    previous: str | None = None
    extra: Mapping[str, str] | None = None
    #: bytes a release of the artifact needs on the target (0: unknown, not checked)
    artifact_bytes: int = 0
    #: the artifact's sha256, which every target checks what it received against ("": not
    #: built, a dry run)
    artifact_digest: str = ""
    #: the manifest of the live release here, as kept on the target ("": none)
    previous_manifest: str = ""
    #: the token of the lock the deploy acts under here: every change deploylib makes to the
    #: layout checks it, and every command gets it in its environment (see ``locks``)
    lock_token: str = ""
    #: putting back the release that was live (it need not be complete, only present)
    restoring: bool = False
    #: the token of the lock held on this target: its commands run only while it is held
    #: ("" on this machine, which is not locked)
    guard_token: str = ""
    #: the pipeline's ``build(image=...)`` template ("": the artifact is a tarball)
    image: str = ""
    #: the digest the registry gave the deploy's image ("": not pushed, or a dry run)
    image_digest: str = ""

    @property
    def layout(self) -> Layout:
        return Layout(self.env.deploy_to)

    @property
    def release_path(self) -> str:
        return f"{self.env.deploy_to}/releases/{self.release}"

    @property
    def values(self) -> dict[str, str]:
        layout = self.layout
        values = {
            "app": self.env.app,
            "env": self.env.name,
            "release": self.release,
            "revision": self.revision,
            "deploy_to": self.env.deploy_to,
            "release_path": self.release_path,
            "current_path": layout.current,
            "shared_path": layout.shared,
            "host": self.host.name,
            "host_address": LOOPBACK if self.host.is_local else self.host.address,
            "artifact": self.artifact,
        }
        values.update(self.extra or {})
        if self.image:
            values["image"] = self.image_reference(values)
        return values

    def image_reference(self, values: dict[str, str]) -> str:
        """The release's image: the ``build(image=...)`` template filled for this release (a
        rollback's too), in the environment's registry."""
        filled = placeholders.render_text(self.image, values, None)
        try:
            return images.reference(filled, self.env.registry)
        except ValueError as exc:
            raise ConfigError(str(exc), key="build(image=...)") from None

    def registry_login(self) -> images.Login | None:
        """The registry's credentials, when the env files hold both ``REGISTRY_USERNAME`` and
        ``REGISTRY_PASSWORD`` (None otherwise: the registry takes anyone)."""
        user = self.env.variables.get(REGISTRY_USERNAME)
        password = self.env.variables.get(REGISTRY_PASSWORD)
        if user is None or password is None:
            return None
        registry = images.registry_of(self.values["image"]) or ""
        return images.Login(
            registry, user, password if isinstance(password, Secret) else Secret(password)
        )

    def shell(self, template: str) -> str:
        return placeholders.render_shell(template, self.values)

    def path(self, template: str) -> str:
        """A path from deploy.toml (already interpolated when it was loaded): placeholders
        filled, nothing else — a ``${VAR}`` left in it (written ``$${VAR}``) stays as it is,
        so a secret can never be filled into a path and onto a command line."""
        return placeholders.render_text(template, self.values, None)

    def text(self, template: str) -> str:
        lookup = self.env.lookup or {k: reveal(v) for k, v in self.env.variables.items()}
        return placeholders.render_text(template, self.values, lookup)

    def command(
        self,
        template: str,
        *,
        cwd: str | None = None,
        timeout: float | None = None,
        description: str = "",
        inherit_lock: bool = True,
        sudo: bool | str = False,
    ) -> Command:
        """A user command: placeholders filled and quoted, env-file variables in its environment.

        With ``inherit_lock`` it also gets the lock's token, so that a deploy it starts runs
        under this one's lock. Restarts do not: what they leave running in the background
        outlives this deploy, and must never act under its lock.

        ``sudo`` runs it as another user through ``sudo -n`` (see ``deploylib.sudo``): a user
        name, or ``True`` for the environment's ``become`` user (root when it has none)."""
        env: dict[str, str | Secret] = dict(self.env.variables)
        if self.lock_token and inherit_lock:
            env[INHERITED_LOCK] = self.lock_token
        command = Command(
            self.shell(template),
            cwd=placeholders.render_text(cwd, self.values, {}) if cwd else None,
            env=env,
            timeout=timeout or self.env.command_timeout,
            description=description,
            guard=guard_for(self.layout, self.guard_token or None),
        )
        user = self.sudo_user(sudo)
        return as_user(command, user) if user else command

    def sudo_user(self, sudo: bool | str) -> str | None:
        """Who a command with this ``sudo`` option runs as (``None``: the login user)."""
        if sudo is True:
            return self.env.become or "root"
        return sudo or None
