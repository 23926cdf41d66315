"""Delta releases, the target's side: a push that makes the new release from the live one's
unchanged files, hard-linked, and a smaller artifact with everything else.

The files to take are listed by this machine (``release_delta``); the target takes only those
that are regular files in the live release (``find -type f``: no symlink, nothing reached
through one), then checks every one against the sha256 the new artifact has for it, and its
mode and owner against what they were when that release was made (``<release>.meta``). A file
missing or changed there (edited or chmod-ed in place, or its release damaged) makes the
command undo what it made and exit with ``FALLBACK_EXIT``: the whole artifact is sent
instead. Hard links share their file with the live release, so what the smaller artifact
brings replaces a file (tar unlinks it first), never writes into it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import replace

from deploylib.commands import FALLBACK_EXIT, Command
from deploylib.remote.layout import Layout
from deploylib.remote.release import file_listing, shipped_command
from deploylib.secrets import Secret


def sums_text(entries: Sequence[tuple[str, str]]) -> bytes:
    """``sha256sum -c`` input for (path, sha256) pairs: a name with a backslash or a newline
    is escaped, its line starting with a backslash, as GNU sha256sum reads it."""
    lines = []
    for path, sha in entries:
        name = path.encode("utf-8", "surrogateescape")
        if b"\\" in name or b"\n" in name:
            name = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
            lines.append(b"\\" + sha.encode() + b"  " + name + b"\n")
        else:
            lines.append(sha.encode() + b"  " + name + b"\n")
    return b"".join(lines)


def delta_push_command(
    layout: Layout,
    release: str,
    revision: str,
    shared_dirs: Sequence[str],
    shared_files: Sequence[str],
    *,
    previous: str,
    linked: Sequence[tuple[str, str]],
    artifact: str,
    digest: str,
    manifest: str,
    fallback: Command,
    need_bytes: int = 0,
    variables: Mapping[str, str | Secret] | None = None,
    token: str | None = None,
) -> Command:
    """A push that sends ``artifact`` (the delta: everything but the ``linked`` files, each a
    (path, sha256) pair) and takes the ``linked`` files from release ``previous``, checked;
    ``fallback`` (the whole push) runs instead when they are not all there as listed."""
    q = shlex.quote
    upload = layout.upload_path(release)
    part = upload + ".part"
    names, sums, have, take, got = (
        upload + suffix for suffix in (".names", ".sums", ".have", ".take", ".got")
    )
    new, old = layout.release_path(release), layout.release_path(previous)
    old_meta = layout.manifest_path(previous) + ".meta"
    listed = b"".join(path.encode("utf-8", "surrogateescape") + b"\0" for path, _ in linked)
    refused = (
        f"the files of {old} are not all as its manifest says (changed since): "
        "sending the whole artifact"
    )
    scratch = (names, sums, have, take, got)
    unpack = [
        f"mkdir -p {q(new)}",
        f"{{ {{ [ -d {q(old)} ] && [ ! -L {q(old)} ] && [ -f {q(old_meta)} ] && "
        f"(cd {q(old)} && find . -type f -printf '%P\\0') | LC_ALL=C sort -z > {q(have)} && "
        f"LC_ALL=C sort -z {q(names)} | LC_ALL=C comm -z -12 {q(have)} - > {q(take)} && "
        # links only: the directories are made as a full unpack makes those it is not given
        f"(cd {q(old)} && xargs -0 -r cp -l --parents -t {q(new)} -- < {q(take)}) && "
        f"(cd {q(new)} && sha256sum -c --quiet --status {q(sums)}) && "
        # each file's mode and owner as when its release was made (a chmod in place shows)
        f"{file_listing(new)} > {q(got)} && "
        f"[ -z \"$(LC_ALL=C comm -z -23 {q(got)} {q(old_meta)} | tr -d '\\0' | head -c 1)\" ]; "
        f"}} 2>/dev/null || "
        f"{{ rm -rf {q(new)}; echo {q(refused)} >&2; exit {FALLBACK_EXIT}; }}; }}",
        # the directories the links needed get the mode tar gives those it is not given
        "__m=$(printf '%o' $(( 0777 & ~$(umask) )))",
        f'find {q(new)} -type d -exec chmod "$__m" {{}} +',
        f"tar -xzf {q(part)} -C {q(new)}",
        f"rm -f {q(part)} {' '.join(q(p) for p in scratch)}",
    ]
    command = shipped_command(
        layout,
        release,
        revision,
        shared_dirs,
        shared_files,
        unpack,
        artifact=artifact,
        digest=digest,
        need_bytes=need_bytes,
        variables=variables,
        token=token,
        manifest=manifest,
        extra=[(names, listed), (sums, sums_text(linked))],
        scratch=scratch,
    )
    return replace(command, fallback=fallback)
