"""Secrets are masked in every form deploylib writes them in, whole, wherever output is cut."""

from __future__ import annotations

import json
import random
import shlex
import string
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deploylib.backends.local import LocalBackend
from deploylib.commands import Command, Result
from deploylib.envfile import printf_escaped, value_token
from deploylib.secrets import MASK, MIN_REDACTED_LENGTH, Redactor, Secret
from tests.conftest import BASIC_PIPELINE, Project


def _unquoted_token(value: str) -> str:
    token = value_token(value)
    return token[1:-1] if token.startswith('"') else token


ENCODINGS: dict[str, Callable[[str], str]] = {
    "raw": lambda v: v,
    "dotenv": value_token,
    "dotenv body": _unquoted_token,
    "shlex": shlex.quote,
    "json": lambda v: json.dumps(v)[1:-1],
    "json utf-8": lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
    "repr": lambda v: repr(v)[1:-1],
    "printf": printf_escaped,
    "printf body": lambda v: v.replace("\\", "\\\\").replace("\n", "\\n"),
}


HOSTILE = [
    'pa"ss\\word',
    'it\'s a "quoted" \\path\\',
    "pa${ss}word-$HOME",
    "tab\there\rand é漢字",
    '-----BEGIN KEY-----\nMIIEabc+/=\nline\\two "q"\n-----END KEY-----\n',
]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("value", HOSTILE)
def test_every_encoding_deploylib_writes_is_masked(value: str, encoding: str) -> None:
    form = ENCODINGS[encoding](value)
    redacted = Redactor([value]).redact(f"before {form} after")
    assert form not in redacted
    assert redacted.startswith("before ") and redacted.endswith(" after") and MASK in redacted


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_each_line_of_a_multi_line_secret_is_masked_in_every_encoding(encoding: str) -> None:
    value = 'first "line"\nsecond\\line\n'
    redactor = Redactor([Secret(value)])
    for line in value.splitlines():
        form = ENCODINGS[encoding](line)
        assert form not in redactor.redact(f"> {form} <")


SECRETS = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=MIN_REDACTED_LENGTH,
    max_size=30,
).filter(lambda v: not v.isspace())


@settings(max_examples=300, deadline=None)
@given(value=SECRETS, encoding=st.sampled_from(sorted(ENCODINGS)), around=st.text(max_size=20))
def test_any_value_is_masked_in_any_encoding(value: str, encoding: str, around: str) -> None:
    form = ENCODINGS[encoding](value)
    redacted = Redactor([value]).redact(around + form + around)
    assert form not in redacted
    assert value not in redacted


def test_values_shorter_than_the_minimum_and_blank_lines_are_not_searched() -> None:
    redactor = Redactor(["ab", "ok\n    \nlong-enough"])
    assert redactor.redact("ab ok    long-enough") == "ab ok    ***"


def test_overlapping_secrets_are_masked_together() -> None:
    redactor = Redactor(["abcdef", "defghi"])
    assert redactor.redact("x abcdefghi y") == "x *** y"
    assert redactor.redact("defghi abcdef") == "*** ***"


def test_hundreds_of_secrets_over_megabytes_of_output_are_all_masked() -> None:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "-_"
    secrets = ["".join(rng.choices(alphabet, k=rng.randint(8, 40))) for _ in range(300)]
    secrets += [f'quo"te\\{i}' for i in range(50)]
    redactor = Redactor(secrets)
    filler = "".join(rng.choices(string.ascii_lowercase + " \n", k=2_000_000))
    pieces = [filler[i : i + 5000] for i in range(0, len(filler), 5000)]
    planted = [ENCODINGS[e](s) for s in secrets for e in ("raw", "dotenv body", "json", "shlex")]
    text = "".join(p + planted[i % len(planted)] for i, p in enumerate(pieces))

    redacted = redactor.redact(text)

    for secret in secrets:
        assert secret not in redacted
    assert redacted.count(MASK) >= len(pieces)


def test_summary_redacts_before_cutting_so_a_secret_across_the_cut_is_masked_whole() -> None:
    secret = "Sup3r-S3cret-Tok3n-0123456789"
    result = Result(1, stderr=secret + "." * 1990)
    assert "456789" in result.summary()  # cut first: the secret's tail would be shown
    shown = result.summary(redact=Redactor([secret]).redact)
    assert shown.startswith("exit 1: ") and shown.endswith("." * 1990)
    assert not any(secret[i : i + 3] in shown for i in range(len(secret) - 2))


def test_summary_without_redact_is_as_before() -> None:
    assert Result(2, stdout="out", stderr=" err ").summary() == "exit 2: err"
    assert Result(1, stdout="x" * 50, timed_out=True).summary(10) == "timed out: " + "x" * 10


# ---------------------------------------------------------------------------- real deploys

ESCAPED_SECRET = 'pa"ss\\word-1234'

PRINTS_THE_ENV_FILE = BASIC_PIPELINE.replace(
    'run("test ! -e FAIL_PREPARE", cwd="{release_path}"),',
    'run("cat {release_path}/.env; printf \'%s\\\\n\' \\"$API_TOKEN\\"; '
    "python3 -c 'import json, os; t = os.environ[\\\"API_TOKEN\\\"]; print(json.dumps(t), repr(t))'"
    '; exit 1"),',
)


def test_a_failing_step_that_prints_the_env_file_shows_no_form_of_a_secret(
    project: Project,
) -> None:
    project.write(".env", 'API_TOKEN="pa\\"ss\\\\word-1234"\n')
    project.write("pipelines/web.py", PRINTS_THE_ENV_FILE)

    result = project.cli("deploy", "--env", "dev", "--events", "events.jsonl", "--verbose")

    assert result.returncode == 1, result.stdout + result.stderr
    shown = result.stdout + result.stderr
    assert "step 'run' failed" in shown and MASK in shown
    stored = (project.root / "events.jsonl").read_text() + json.dumps(project.log())
    for encoding, form in ((e, ENCODINGS[e](ESCAPED_SECRET)) for e in ENCODINGS):
        assert form not in shown, encoding
        assert form not in stored, encoding
    assert "pa" + '\\"' + "ss" not in shown + stored  # the dotenv file's own text


def test_a_secret_across_the_output_cut_is_not_shown_in_part(project: Project) -> None:
    secret = "Sup3r-S3cret-Tok3n-qwertyuiopz"  # no run of digits a release id could hold
    project.write(".env", f"API_TOKEN={secret}\n")
    project.write(
        "pipelines/web.py",
        BASIC_PIPELINE.replace(
            'run("test ! -e FAIL_PREPARE", cwd="{release_path}"),',
            "run(\"printf '%s' \\\"$API_TOKEN\\\" >&2; head -c 1990 /dev/zero | tr '\\\\0' . >&2; "
            'exit 1"),',
        ),
    )

    result = project.cli("deploy", "--env", "dev")

    assert result.returncode == 1
    shown = result.stdout + result.stderr + json.dumps(project.log())
    assert "....." in shown
    assert not any(secret[i : i + 4] in shown for i in range(len(secret) - 3))


@pytest.mark.parametrize("verbose", [False, True])
def test_a_secret_across_a_long_lines_cut_is_in_no_piece_of_the_log_or_the_terminal(
    project: Project, verbose: bool
) -> None:
    """Output lines longer than an event carries are cut in pieces; never inside a secret,
    which each piece would show in part (the run's log file keeps every line; ``--verbose``
    shows them as they come)."""
    secret = "VeryLongSecretTokenValue-ABCDEFGHIJ"
    project.write(".env", f"TOKEN={secret}\n")
    project.write(
        "pipelines/web.py",
        BASIC_PIPELINE.replace(
            'run("test ! -e FAIL_PREPARE", cwd="{release_path}"),',
            'run("printf \'%03990d%s%05000d\\\\n\' 0 \\"$TOKEN\\" 0; exit 1"),',
        ),
    )

    result = project.cli("deploy", "--env", "dev", *(["--verbose"] if verbose else []))

    assert result.returncode == 1, result.stdout + result.stderr
    [log] = (project.root / ".deploylib" / "logs").iterdir()
    shown = result.stdout + result.stderr + log.read_text()
    assert "0" * 3000 in log.read_text() and MASK in log.read_text()
    assert not any(secret[i : i + 6] in shown for i in range(len(secret) - 5))


@pytest.mark.parametrize("before", [997, 998, 999, 1999])
def test_a_character_across_a_local_read_is_decoded_whole(before: int) -> None:
    """This machine's commands are read 1,000 bytes at a time: a character cut by a read is
    still itself, not two replacement characters (which would unmask a secret holding it)."""
    text = "pässwörd-geheim-123 ✓"
    for stream in ("", ">&2"):
        done = LocalBackend().run(Command(f"printf '%0{before}d%s' 0 '{text}' {stream}"))
        assert done.ok
        said = done.stderr if stream else done.stdout
        assert said == "0" * before + text


def test_a_non_ascii_secret_across_a_local_read_is_masked(project: Project) -> None:
    secret = "pässwörd-geheim-123"
    project.write(".env", f"API_TOKEN={secret}\n")
    project.write(
        "pipelines/web.py",
        BASIC_PIPELINE.replace(
            'run("test ! -e FAIL_PREPARE", cwd="{release_path}"),',
            'run("printf \'%0998d%s\' 0 \\"$API_TOKEN\\" >&2; exit 1"),',
        ),
    )

    result = project.cli("deploy", "--env", "dev", "--events", "events.jsonl")

    assert result.returncode == 1, result.stdout + result.stderr
    [log] = (project.root / ".deploylib" / "logs").iterdir()
    shown = result.stdout + result.stderr + log.read_text()
    shown += (project.root / "events.jsonl").read_text()
    assert MASK in shown
    assert "geheim" not in shown and "\ufffd" not in shown


@pytest.mark.parametrize("task", ["status", "releases"])
def test_status_and_releases_never_show_a_secret_a_host_wrote(project: Project, task: str) -> None:
    secret = "host-held-s3cret"
    project.write(".env", f'API_TOKEN="{secret}"\n')
    assert project.cli("deploy", "--env", "dev").returncode == 0
    project.hold_lock({"user": f"u {secret}", "pid": 1})
    entry = project.log()[-1]
    entry.update(user=json.dumps(secret), error=f"failed: {secret}", time=f"{entry['time']}+1")
    project.append_log(entry)

    for args in ((), ("--json",)):
        result = project.cli(task, "--env", "dev", *args)
        assert result.returncode == 0, result.stderr
        assert MASK in result.stdout
        assert secret not in result.stdout + result.stderr


def test_a_secret_in_a_url_is_masked_encoded_and_where_a_parser_cuts_it() -> None:
    secret = "s3cr et/+&=?#value"
    redact = Redactor([secret]).redact
    for shown in (
        f"GET http://127.0.0.1:1/health?t={secret}",
        "GET http://127.0.0.1:1/health?t=s3cr et/+&=?: status 500",  # cut at '#'
        "GET http://127.0.0.1:1/health?t=s3cr%20et%2F%2B%26%3D%3F%23value",
        "GET http://127.0.0.1:1/health?t=s3cr+et%2F%2B%26%3D%3F%23value",
    ):
        assert "s3cr" not in redact(shown), redact(shown)
