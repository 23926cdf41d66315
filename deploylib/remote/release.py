"""Making a release on a target and switching to it: free space and uploads, the env file,
unpacking, shared links, REVISION, removing releases, and the atomic switch of ``current``."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from deploylib import envfile
from deploylib.commands import Command, Probe, Upload
from deploylib.remote import free_space, gnu, images, python_env, sparing
from deploylib.remote.layout import ENV_FILE, Layout
from deploylib.remote.lock import guard_for
from deploylib.secrets import Secret
from deploylib.stdin_env import ENV_PRELUDE, env_block


def env_link(layout: Layout) -> str:
    """Where ``shared/.env`` points: the live release's env file (absolute: ``shared`` may
    itself be a link elsewhere)."""
    return f"{layout.current}/{ENV_FILE}"


#: the shell variable ``read_env_link`` sets: what ``shared/.env`` links to ("" if no link)
ENV_LINK_VAR = "__dl_env"


def read_env_link(layout: Layout) -> str:
    """Shell that keeps what ``shared/.env`` links to in ``ENV_LINK_VAR``, read once for all
    the tests of one script (``server_env_test(known=True)``). Always passes."""
    shared_env = shlex.quote(f"{layout.shared}/{ENV_FILE}")
    return f'{{ {ENV_LINK_VAR}="$(readlink {shared_env} 2>/dev/null)" || {ENV_LINK_VAR}=; }}'


def server_env_test(layout: Layout, *, known: bool = False) -> str:
    """Shell that passes when ``shared/.env`` is config kept on the server (a file, or a link to
    one, that is not the link deploylib makes): with no env files in the project, deploylib
    leaves it as it is. ``known``: the script ran ``read_env_link`` (and kept it up to date)."""
    q = shlex.quote
    shared_env = q(f"{layout.shared}/{ENV_FILE}")
    link = q(env_link(layout))
    value = f'"${ENV_LINK_VAR}"' if known else f'"$(readlink {shared_env})"'
    return f"{{ [ -e {shared_env} ] && [ {value} != {link} ]; }}"


def prepare_command(
    layout: Layout, token: str | None, need_bytes: int = 0, *, has_env: bool = True
) -> Command:
    """The first operation of ``push``: check free space, clear uploads that interrupted
    deploys left, and make ``shared/.env`` the link to the live release's env file.

    ``has_env``: the project has env-file variables, so deploylib manages the env file. A
    ``shared/.env`` that is a file (written by deploylib before releases had their own) is then
    first copied into every release that links to it or has no env file (so the live release
    keeps reading the same values), then replaced by the link; a copy of it stays as
    ``shared/.env.before-release-env``. Without env-file variables, a ``shared/.env`` kept on the
    server by hand is left alone (see ``server_env_test``)."""
    lines = prepare_lines(layout, need_bytes, has_env=has_env)
    return Command(" && ".join(lines), description="prepare target", guard=guard_for(layout, token))


def prepare_lines(layout: Layout, need_bytes: int, *, has_env: bool) -> list[str]:
    """The shell lines of ``prepare_command``, to be joined with ``&&``. They read where
    ``shared/.env`` links to once (``read_env_link``) and keep it up to date: lines after them
    in the same script may test it with ``server_env_test(known=True)``."""
    q = shlex.quote
    shared_env = f"{layout.shared}/{ENV_FILE}"
    keep = f"{shared_env}.before-release-env"
    link = f"{shared_env}.link"
    lines = []
    if need_bytes > 0:
        lines.append(space_check(layout.deploy_to, need_bytes))
    lines += [
        sparing.empty_dir(layout.uploads),
        sparing.make_dirs(layout.uploads, layout.shared, layout.releases),
        read_env_link(layout),
    ]
    target = q(env_link(layout))
    make_link = (
        f'{{ if [ ! -L {q(shared_env)} ] || [ "${ENV_LINK_VAR}" != {target} ]; then '
        f"rm -rf {q(link)} && ln -s {target} {q(link)} && "
        f"{gnu.rename_onto(link, shared_env)} && {ENV_LINK_VAR}={target}; fi; }}"
    )
    if has_env:
        lines += [
            f"if {server_env_test(layout, known=True)}; then "
            + sparing.globbing(
                f'for r in {q(layout.releases)}/*/; do [ -d "$r" ] || continue; '
                f'e="$r{ENV_FILE}"; if {{ [ -L "$e" ] && [ "$e" -ef {q(shared_env)} ]; }} || '
                '{ [ ! -e "$e" ] && [ ! -L "$e" ]; }; then '
                f'cp -p {q(shared_env)} "$e.tmp" && mv -fT "$e.tmp" "$e" || exit 1; fi; done'
            )
            + f"; cp -p {q(shared_env)} {q(keep)} || exit 1; fi",
            make_link,
        ]
    else:
        lines.append(f"{{ {server_env_test(layout, known=True)} || {make_link}; }}")
    return lines


def space_check(directory: str, need_bytes: int) -> str:
    """Shell that fails, saying how much is free, unless ``directory`` has ``need_bytes`` free."""
    need_kb = need_bytes // 1024 + 1
    message = (
        f"not enough free space in {directory}: this release needs {need_kb // 1024 + 1} MiB, "
    )
    return (
        f"{free_space.set_available_kb('avail', shlex.quote(directory))} && "
        f'{{ [ "$avail" -ge {need_kb} ] || '
        f'{{ echo {shlex.quote(message)}"$((avail / 1024)) MiB are free" >&2; exit 1; }}; }}'
    )


def artifact_footprint(artifact: str) -> int:
    """Bytes a release of this artifact takes on a target: the upload plus what it unpacks to,
    with a tenth more for the file system's overhead; 0 when there is no artifact (dry run).

    What a gzipped tar unpacks to is read from the gzip trailer (the tar's size, its headers
    and padding included: a little more than its files), without decompressing it; only when
    that cannot be right (smaller than the artifact: a tar of 4 GiB or more, whose size the
    trailer keeps modulo 2**32) are the tar's members summed."""
    path = Path(artifact)
    if not path.is_file():
        return 0
    size = path.stat().st_size
    unpacked = _gzip_trailer_size(path, size)
    if unpacked is None or unpacked < size:
        unpacked = _members_size(path)
    return int((size + unpacked) * 1.1)


def _gzip_trailer_size(path: Path, size: int) -> int | None:
    """The uncompressed size a gzip file's trailer records (modulo 2**32); None if no gzip."""
    if size < 18:
        return None
    try:
        with path.open("rb") as file:
            if file.read(2) != b"\x1f\x8b":
                return None
            file.seek(-4, 2)
            return int.from_bytes(file.read(4), "little")
    except OSError:
        return None


def _members_size(path: Path) -> int:
    import tarfile

    try:
        with tarfile.open(path, "r:*") as tar:
            return sum(member.size for member in tar)
    except (tarfile.TarError, OSError):
        return 0


def env_file_text(variables: Mapping[str, str | Secret]) -> str:
    """The release's env file: one ``NAME="value"`` line per variable, read back exactly by
    python-dotenv."""
    return envfile.render(variables)


def artifact_check(artifact: str) -> Probe:
    """Pass when the build wrote a non-empty artifact: a ``stat`` on the controller, in its own
    process (a ``test -s`` through the local shell cost 10 to 30 ms, and up to 0.3 s while 40
    connections opened in the background)."""
    return Probe("file", path=artifact, description="check artifact")


def upload_artifact(layout: Layout, artifact: str, release: str) -> Upload:
    return Upload(Path(artifact), layout.upload_path(release), 0o600, description="upload artifact")


def link_shared(release_path: str, shared: str, relative: str, *, is_file: bool) -> list[str]:
    """Shell lines that make ``release_path/relative`` a link to ``shared/relative``.

    Nothing is ever made or removed through a symlink: each directory between the release and
    the link is checked not to be a link (from the artifact, or an earlier shared path) before
    it is used, and the link's own place is removed only as what it is: a link or a file with
    ``rm -f``, a real directory of the release with ``rm -rf``."""
    q = shlex.quote
    target, link = f"{shared}/{relative}", f"{release_path}/{relative}"
    lines = []
    if is_file:
        lines.append(
            f"{{ test -e {q(target)} || "
            f"{{ echo {q('shared file missing: ' + target)} >&2; exit 1; }}; }}"
        )
    else:
        lines.append(sparing.make_dirs(target))
    for parent in reversed(PurePosixPath(relative).parents[:-1]):
        place = f"{release_path}/{parent}"
        escape = f"{place} is a symlink: not linking {relative} through it"
        lines += [
            f"{{ [ ! -L {q(place)} ] || {{ echo {q(escape)} >&2; exit 1; }}; }}",
            sparing.make_dirs(place),
        ]
    lines += [
        f"{{ if [ -L {q(link)} ]; then rm -f {q(link)}; elif [ -d {q(link)} ]; then "
        f"rm -rf {q(link)}; else {sparing.remove(link)}; fi; }}",
        f"ln -s {q(target)} {q(link)}",
    ]
    return lines


def unpack_command(
    layout: Layout,
    release: str,
    revision: str,
    shared_dirs: Sequence[str],
    shared_files: Sequence[str],
    *,
    variables: Mapping[str, str | Secret] | None = None,
    token: str | None = None,
    image: str | None = None,
    digest: str = "",
) -> Command:
    """Unpack the uploaded artifact into ``releases/<release>``, link shared paths, write the
    release's env file (from stdin, mode 0600) and, last, REVISION: a release with REVISION is
    complete. With no ``variables`` and a ``shared/.env`` kept on the server by hand, that file
    stays the config: linked as ``.env`` when listed in ``shared_files``, else left to the app.

    A release whose artifact is a container ``image`` (pulled already) has nothing to unpack:
    its directory gets ``IMAGE`` (the reference it runs) and REVISION names the image and its
    ``digest`` on two more lines, ``image REF`` and ``digest sha256:...``."""
    q = shlex.quote
    release_path = layout.release_path(release)
    upload = layout.upload_path(release)
    env_path = f"{release_path}/{ENV_FILE}"
    lines = [f"mkdir -p {q(release_path)}"]
    if image is None:
        lines += [f"tar -xzf {q(upload)} -C {q(release_path)}", f"rm -f {q(upload)}"]
    else:
        image_path = f"{release_path}/IMAGE"
        lines += [
            f"printf '%s\\n' {q(image)} > {q(image_path + '.tmp')}",
            f"mv -fT {q(image_path + '.tmp')} {q(image_path)}",
        ]
    write_env = (
        f"{sparing.remove(env_path + '.tmp')} && "
        f"(umask 077 && cat > {q(env_path + '.tmp')}) && "
        f"mv -fT {q(env_path + '.tmp')} {q(env_path)}"
    )
    lines += release_lines(
        layout,
        release,
        revision,
        shared_dirs,
        shared_files,
        has_variables=bool(variables),
        write_env=write_env,
        drop_env="cat > /dev/null",
        image=image,
        digest=digest,
    )
    if token:
        lines.append(guard_for(layout, token))  # the lock still held once the release is made
    content = env_file_text(variables or {})
    has_secret = any(isinstance(v, Secret) for v in (variables or {}).values())
    return Command(
        " && ".join(lines),
        stdin=Secret(content) if has_secret else content.encode(),
        description="unpack",
        guard=guard_for(layout, token),
    )


def release_lines(
    layout: Layout,
    release: str,
    revision: str,
    shared_dirs: Sequence[str],
    shared_files: Sequence[str],
    *,
    has_variables: bool,
    write_env: str,
    drop_env: str,
    image: str | None = None,
    digest: str = "",
    env_link_known: bool = False,
) -> list[str]:
    """What makes an unpacked release directory complete, as shell lines to join with ``&&``:
    the shared links, the env file (``write_env`` puts it in place; ``drop_env`` discards it
    when a ``shared/.env`` kept on the server stays the config) and REVISION, last.
    ``env_link_known``: ``prepare_lines`` ran before them in the same script."""
    q = shlex.quote
    release_path = layout.release_path(release)
    revision_path = f"{release_path}/REVISION"
    lines = []
    for shared_dir in shared_dirs:
        lines += link_shared(release_path, layout.shared, shared_dir, is_file=False)
    for shared_file in shared_files:
        if shared_file == ENV_FILE:
            continue  # the release's own env file, written below
        lines += link_shared(release_path, layout.shared, shared_file, is_file=True)
    if has_variables:
        lines.append(write_env)
    else:
        # no env files in the project: a shared/.env kept on the server stays the config
        server_env = drop_env
        if ENV_FILE in shared_files:
            server_env += " && " + " && ".join(
                link_shared(release_path, layout.shared, ENV_FILE, is_file=True)
            )
        kept = server_env_test(layout, known=env_link_known)
        lines.append(f"if {kept}; then {server_env}; else {write_env}; fi")
    lines += [
        sparing.remove(revision_path + ".tmp"),
        f"printf '%s %s\\n' {q(release)} {q(revision)} > {q(revision_path + '.tmp')}",
        *(
            [
                f"printf 'image %s\\ndigest %s\\n' {q(image)} {q(digest or '-')} "
                f">> {q(revision_path + '.tmp')}"
            ]
            if image is not None
            else []
        ),
        f"mv -fT {q(revision_path + '.tmp')} {q(revision_path)}",
    ]
    return lines


def push_command(
    layout: Layout,
    release: str,
    revision: str,
    shared_dirs: Sequence[str],
    shared_files: Sequence[str],
    *,
    artifact: str,
    digest: str,
    need_bytes: int = 0,
    variables: Mapping[str, str | Secret] | None = None,
    token: str | None = None,
    manifest: str | None = None,
) -> Command:
    """The whole of ``push`` for an artifact, as one command on one channel:
    ``prepare_lines``; the release's env file and the artifact, both from stdin (the env file
    first, its length known, then the artifact streamed from this machine), the artifact's
    sha256 checked against ``digest`` before anything of it is unpacked; then the unpack,
    ``release_lines``, and last the lock's check again. A push that passed on every target
    proves every lock was still this deploy's when its release was complete there.

    The received files live under ``uploads`` (cleared by the next deploy's prepare) with mode
    0600; a transfer cut short fails the sha256 check and unpacks nothing.

    With ``manifest`` (``push(delta=True)``), it comes on stdin after the env file and is kept
    as ``.deploylib/manifests/<release>``, for the next deploy's delta."""
    q = shlex.quote
    release_path = layout.release_path(release)
    part = layout.upload_path(release) + ".part"
    # the EXIT trap removes what arrived
    unpack = [f"mkdir -p {q(release_path)}", f"tar -xzf {q(part)} -C {q(release_path)}"]
    return shipped_command(
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
    )


def shipped_command(
    layout: Layout,
    release: str,
    revision: str,
    shared_dirs: Sequence[str],
    shared_files: Sequence[str],
    unpack: Sequence[str],
    *,
    artifact: str,
    digest: str,
    need_bytes: int = 0,
    variables: Mapping[str, str | Secret] | None = None,
    token: str | None = None,
    manifest: str | None = None,
    extra: Sequence[tuple[str, bytes]] = (),
    scratch: Sequence[str] = (),
) -> Command:
    """A push whose ``unpack`` lines make the release directory from what arrived (the
    artifact in ``<upload>.part``): see ``push_command``. ``extra`` are more files sent ahead
    of the artifact, each (the name it arrives as, its bytes); ``scratch``, files the unpack
    makes, removed with what arrived however the command ends."""
    q = shlex.quote
    release_path = layout.release_path(release)
    upload = layout.upload_path(release)
    part, env_part = upload + ".part", upload + ".env"
    env_path = f"{release_path}/{ENV_FILE}"
    content = env_file_text(variables or {})
    mismatch = (
        f"sha256 mismatch: the artifact that arrived in {upload} is not the one sent "
        "(cut short or changed on the way); nothing unpacked"
    )
    blobs = [(env_part, content.encode("utf-8", "surrogateescape"))]
    if manifest is not None:
        blobs.append((upload + ".manifest", manifest.encode("utf-8", "surrogateescape")))
    blobs += list(extra)
    arrived = " ".join(q(path) for path, _ in blobs)
    # whatever ends the script (a failed line, a deadline's TERM, a dropped connection's HUP),
    # nothing it received stays: the env file may hold secrets (KILL, which no trap sees, is
    # left to the next deploy's prepare and to the cleanup of an unfinished release)
    leftovers = f"{q(part)} {arrived} {' '.join(q(p) for p in scratch)}".strip()
    lines = [
        f"trap 'rm -f {escape_quoted(leftovers)}' EXIT",
        "trap 'exit 129' HUP",
        "trap 'exit 130' INT",
        "trap 'exit 143' TERM",
        *prepare_lines(layout, need_bytes, has_env=bool(variables)),
        f"(umask 077 && {received([(p, len(b)) for p, b in blobs])} && cat > {q(part)})",
        f'sum="$({gnu.sha256_read(part)})"',
        f'{{ [ "${{sum%% *}}" = {q(digest)} ] || '
        f"{{ rm -f {q(part)} {arrived}; echo {q(mismatch)} >&2; exit 1; }}; }}",
        *unpack,
        *(keep_manifest(layout, release) if manifest is not None else []),
        *release_lines(
            layout,
            release,
            revision,
            shared_dirs,
            shared_files,
            has_variables=bool(variables),
            write_env=f"mv -fT {q(env_part)} {q(env_path)}",
            drop_env=f"rm -f {q(env_part)}",
            env_link_known=True,
        ),
    ]
    guard = guard_for(layout, token)
    if guard:
        lines.append(guard)
    whole = b"".join(data for _, data in blobs)
    stdin: bytes | Secret = whole
    if any(isinstance(v, Secret) for v in (variables or {}).values()):
        stdin = Secret(whole.decode("utf-8", "surrogateescape"))
    return Command(
        " && ".join(lines),
        stdin=stdin,
        stdin_file=Path(artifact),
        description="push",
        guard=guard,
    )


def received(files: Sequence[tuple[str, int]]) -> str:
    """Shell that writes the next bytes of stdin to each file in turn, exactly as many as
    its length says (``head -c`` reads no further than it writes), then leaves the rest."""
    q = shlex.quote
    return " && ".join(
        f"head -c {size} > {q(path)}" if size else f": > {q(path)}" for path, size in files
    )


def keep_manifest(layout: Layout, release: str) -> list[str]:
    """Shell lines that keep the received manifest as the release's, and beside it, as
    ``<release>.meta``, what its files are on disk once unpacked (``file_listing``): a later
    delta takes a file from this release only while it is still so."""
    q = shlex.quote
    received_at = layout.upload_path(release) + ".manifest"
    meta = layout.manifest_path(release) + ".meta"
    return [
        f"mkdir -p {q(layout.manifests)}",
        f"{file_listing(layout.release_path(release))} > {q(meta + '.tmp')}",
        f"mv -fT {q(meta + '.tmp')} {q(meta)}",
        f"mv -fT {q(received_at)} {q(layout.manifest_path(release))}",
    ]


def file_listing(directory: str) -> str:
    """Shell that prints each regular file under ``directory`` as ``MODE UID GID PATH`` and a
    NUL, sorted bytewise (``comm -z`` compares two such listings)."""
    return (
        f"(cd {shlex.quote(directory)} && find . -type f -printf '%m %U %G %P\\0') | "
        "LC_ALL=C sort -z"
    )


def escape_quoted(text: str) -> str:
    """``text`` for use inside single quotes in a script that is itself single-quoted once
    more by ``trap``: each ``'`` closed, escaped and reopened."""
    return text.replace("'", "'\\''")


def remove_release_command(
    layout: Layout, releases: Iterable[str], token: str | None = None, *, app: str = ""
) -> Command:
    """Remove release dirs and their uploads (also a partial upload, and the env file received
    with it) — never the release
    ``current`` points at, whatever the controller believes: that one is kept, and said —
    then the Python environments no remaining release links to. With ``app``, a release that
    ran a container image first loses its stopped containers and its image
    (``images.cleanup_lines``)."""
    q = shlex.quote
    releases = list(releases)
    # `|| live=`: without current, also under `set -e`
    lines = [f'live="$(readlink {q(layout.current)} 2>/dev/null)" || live=', "rc=0"]
    if app:
        lines += images.cleanup_lines(layout, app, releases)
    for release in releases:
        upload = layout.upload_path(release)
        lines.append(
            f'if [ "${{live##*/}}" = {q(release)} ]; then '
            f"echo {q(f'kept {release}: current points at it')} >&2; rc=1; "
            f"else rm -rf -- {q(layout.release_path(release))} {q(upload)} {q(upload + '.part')} "
            f"{q(upload + '.env')} {q(upload + '.manifest')} {q(layout.manifest_path(release))} "
            f"{q(layout.manifest_path(release) + '.meta')} || rc=1; fi"
        )
    lines += [*python_env.prune_lines(layout), "exit $rc"]
    return Command("; ".join(lines), description="remove releases", guard=guard_for(layout, token))


def switch_command(
    layout: Layout, release: str | None, token: str | None = None, *, complete: bool = True
) -> Command:
    """Point ``current`` at ``release`` atomically (symlink to a temp name, then rename(2)).

    With ``complete`` the release must have its REVISION (a new release, or a rollback target);
    without, its directory must exist (putting back the release that was live). ``None`` removes
    ``current``: the state of a target that never had a release. On failure ``current`` is left
    as it was, no temporary link remains, and the message says what is missing and what
    ``current`` points at."""
    q = shlex.quote
    if release is None:
        return Command.of(
            "rm",
            "-f",
            layout.current,
            description="unset current",
            guard=guard_for(layout, token),
        )
    path = layout.release_path(release)
    temporary = f"{layout.deploy_to}/.current-{release}"

    def fail(text: str) -> str:
        now = f'"$(readlink {q(layout.current)} 2>/dev/null || echo "(none)")"'
        return f"{{ echo {q(text + '; current points at ')}{now} >&2; exit 1; }}"

    checks = [f"{{ [ -d {q(path)} ] || {fail(path + ' is missing')}; }}"]
    if complete:
        missing = f"{path}/REVISION is missing (not a complete release)"
        checks.append(f"{{ [ -f {q(path + '/REVISION')} ] || {fail(missing)}; }}")
    move = (
        f"{{ ln -sfn {q('releases/' + release)} {q(temporary)} && "
        f"{gnu.rename_onto(temporary, layout.current)}; }} || "
        f"{{ rm -f {q(temporary)}; {fail('could not switch ' + layout.current)}; }}"
    )
    script = " && ".join([*checks, move])
    return Command(script, description=f"switch to {release}", guard=guard_for(layout, token))


def moved_mark(release: str | None) -> str:
    """The line a switch prints once ``current`` points at ``release`` (``Command.moved_mark``)."""
    return f"@@deploylib: current now points at {release or '(nothing)'}"


def switch_then(switch: Command, then: Command, release: str | None) -> Command:
    """``switch``, then ``then`` (its restart), in one command: the switch's mark printed in
    between, so the result says whether ``current`` moved even when the restart failed.

    ``then``'s variables reach only ``then``: they come on stdin, ahead of its own stdin, and
    ``ENV_PRELUDE`` reads them once ``current`` moved; nothing the project's env files set
    (``PATH``) changes how the switch runs."""
    q = shlex.quote
    mark = moved_mark(release)
    prelude = ENV_PRELUDE if then.env else ""
    script = f"{{ {switch.line}\n}} || exit 1\nprintf '%s\\n' {q(mark)}\n{prelude}{then.full_line}"
    head = env_block(then.env) if then.env else ""
    rest = then.stdin_bytes() or b""
    secret = isinstance(then.stdin, Secret) or any(isinstance(v, Secret) for v in then.env.values())
    stdin: bytes | Secret | None = None
    if head or rest:
        # bytes that are no UTF-8 go through a Secret unchanged (``Command.stdin_bytes``)
        whole = head.encode("utf-8", "surrogateescape") + rest
        stdin = Secret(whole.decode("utf-8", "surrogateescape")) if secret else whole
    return Command(
        script,
        stdin=stdin,
        timeout=then.timeout,
        description=switch.description,
        guard=switch.guard,
        moved_mark=mark,
        parts=(switch, then),
    )
