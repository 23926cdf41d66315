"""Migration-aware rollback: each release records the migration state its deploy left, and a
rollback to a release that does not know every live migration names them and stops, unless
``--yes`` or the pipeline's ``migrate(undo=...)`` reverses them first.

The database here is a file in shared/ (one applied migration a line); each release's
``migrations.txt`` lists the migrations its code knows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from deploylib import schema_state
from deploylib.errors import ConfigError
from deploylib.steps import migrate
from tests.conftest import Project
from tests.testbed.offline_wheels import WHEELS, offline_env

PIPELINE = """\
from deploylib import Pipeline, build, push, migrate, switch, verify, command

pipeline = Pipeline(
    build("tar -czf {{artifact}} -C app ."),
    push(),
    migrate(
        "touch {{shared_path}}/db.txt && while read m; do "
        "grep -qx \\"$m\\" {{shared_path}}/db.txt || echo \\"$m\\" >> {{shared_path}}/db.txt; "
        "done < migrations.txt",
        schema="cat {{shared_path}}/db.txt",
        {undo}
    ),
    switch(),
    verify(command("test ! -e {{current_path}}/BROKEN"), attempts=1, wait=0),
)
"""

UNDO = 'undo="cp {release_path}/migrations.txt {shared_path}/db.txt",'


def make(project: Project, *, undo: bool = False) -> None:
    project.write("pipelines/web.py", PIPELINE.format(undo=UNDO if undo else ""))


def release_with(project: Project, *migrations: str, revision: str) -> str:
    project.write("app/migrations.txt", "".join(f"{m}\n" for m in migrations))
    outcome, _ = project.deploy(revision=revision)
    return outcome.release


def database(project: Project) -> list[str]:
    return (project.target / "shared" / "db.txt").read_text().split()


def test_each_deploy_records_the_migration_state(project: Project) -> None:
    make(project)
    first = release_with(project, "users.0001", "users.0002", revision="r1")
    second = release_with(project, "users.0001", "users.0002", "shop.0001", revision="r2")
    entries = {e["release"]: e for e in project.log() if e["event"] == "deploy"}
    assert entries[first]["schema"] == ["users.0001", "users.0002"]
    assert entries[second]["schema"] == ["users.0001", "users.0002", "shop.0001"]


def test_rollback_past_a_migration_stops_and_names_it(project: Project) -> None:
    make(project)
    first = release_with(project, "users.0001", "users.0002", revision="r1")
    second = release_with(project, "users.0001", "users.0002", "shop.0001", revision="r2")

    refused = project.cli("rollback", "--env", "dev")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    output = refused.stdout + refused.stderr
    assert f"{first} does not know shop.0001" in output and "--yes" in output
    assert project.current() == second  # nothing changed
    assert not (project.target / ".deploylib" / "lock").exists()

    accepted = project.cli("rollback", "--env", "dev", "--yes")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "keeps migrations" in accepted.stdout + accepted.stderr
    assert project.current() == first
    assert database(project) == ["users.0001", "users.0002", "shop.0001"]  # left as it was
    assert project.log()[-1]["schema"] == ["users.0001", "users.0002", "shop.0001"]


def test_undo_reverses_the_migrations_first(project: Project) -> None:
    make(project, undo=True)
    first = release_with(project, "users.0001", revision="r1")
    release_with(project, "users.0001", "shop.0001", "shop.0002", revision="r2")
    done = project.cli("rollback", "--env", "dev")
    assert done.returncode == 0, done.stdout + done.stderr
    assert project.current() == first
    assert database(project) == ["users.0001"]
    assert project.log()[-1]["schema"] == ["users.0001"]
    # and a rollback with nothing beyond the target asks nothing
    again = release_with(project, "users.0001", revision="r3")
    assert project.cli("rollback", "--env", "dev").returncode == 0
    assert project.current() == first != again


def test_a_failed_deploy_that_migrated_still_counts(project: Project) -> None:
    """The deploy ran its migration, then failed verify and was put back: the database has the
    migration, although no live release knows it."""
    make(project)
    first = release_with(project, "users.0001", revision="r1")
    second = release_with(project, "users.0001", "users.0002", revision="r2")
    project.write("app/BROKEN", "")
    project.write("app/migrations.txt", "users.0001\nusers.0002\nusers.0003\n")
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 1
    assert project.current() == second
    (project.root / "app" / "BROKEN").unlink()
    refused = project.cli("rollback", "--env", "dev")
    assert refused.returncode == 1
    assert f"{first} does not know users.0002, users.0003" in refused.stdout + refused.stderr


def test_releases_without_a_recorded_state_are_not_blocked(project: Project) -> None:
    project.write("app/migrations.txt", "a\n")
    first, _ = project.deploy(revision="r1")  # the basic pipeline records no state
    make(project)
    release_with(project, "a", "b", revision="r2")
    done = project.cli("rollback", "--env", "dev")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no migration state is recorded for" in done.stdout + done.stderr
    assert project.current() == first.release


def test_django_and_alembic_states_are_read_from_their_output() -> None:
    django = (
        "[X]  contenttypes.0001_initial\n[X]  auth.0001_initial\n"
        "[ ]  shop.0002_price\n[X]  shop.0001_initial\n"
    )
    assert schema_state.parse("django", django) == (
        "contenttypes.0001_initial",
        "auth.0001_initial",
        "shop.0001_initial",
    )
    alembic = "INFO  [alembic.runtime.migration] Context impl SQLiteImpl.\nae1027a6acf (head)\n"
    assert schema_state.parse("alembic", alembic) == ("ae1027a6acf",)


def test_django_undo_goes_back_per_app() -> None:
    live = ["auth.0001_initial", "shop.0001_initial", "shop.0002_price", "blog.0001_initial"]
    target = ["auth.0001_initial", "shop.0001_initial"]
    script = schema_state.django_undo(live, target)
    lines = [line.split("; ")[-1] for line in script.splitlines()]
    assert lines == [
        '"$py" manage.py migrate --no-input blog zero',
        '"$py" manage.py migrate --no-input shop 0001_initial',
    ]


def test_undo_needs_a_schema() -> None:
    with pytest.raises(ConfigError, match="needs schema"):
        migrate("./manage.py migrate", undo="django")
    with pytest.raises(ConfigError, match='needs schema="alembic"'):
        migrate("alembic upgrade head", schema="django", undo="alembic")


ALEMBIC_PIPELINE = """\
from deploylib import Pipeline, build, push, migrate, python_env, switch, verify, command

pipeline = Pipeline(
    build("tar -czf {artifact} -C app ."),
    push(),
    python_env(),
    migrate(".venv/bin/alembic upgrade head", schema="alembic", undo="alembic"),
    switch(),
    verify(command("test -x {current_path}/.venv/bin/alembic"), attempts=1, wait=0),
)
"""

ALEMBIC_ENV = """\
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
engine = engine_from_config(
    config.get_section(config.config_ini_section), prefix="sqlalchemy.", poolclass=pool.NullPool
)
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""

REVISION = """\
import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down!r}


def upgrade():
    {upgrade}


def downgrade():
    {downgrade}
"""


@pytest.mark.slow
def test_a_real_alembic_head_is_recorded_and_downgraded(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not list(WHEELS.glob("alembic-*.whl")):
        pytest.skip(f"no alembic wheels in {WHEELS} (.ci/run downloads them)")
    for name, value in offline_env(tmp_path / "cache").items():
        monkeypatch.setenv(name, value)
    database = tmp_path / "db.sqlite3"
    project.write("pipelines/web.py", ALEMBIC_PIPELINE)
    project.write("app/requirements.txt", "alembic\n")
    project.write(
        "app/alembic.ini",
        f"[alembic]\nscript_location = migrations\nsqlalchemy.url = sqlite:///{database}\n",
    )
    project.write("app/migrations/env.py", ALEMBIC_ENV)
    items = 'op.create_table("items", sa.Column("id", sa.Integer, primary_key=True))'
    project.write(
        "app/migrations/versions/a1_items.py",
        REVISION.format(
            revision="a1", down=None, upgrade=items, downgrade='op.drop_table("items")'
        ),
    )
    first, _ = project.deploy(revision="r1")
    add = 'op.add_column("items", sa.Column("price", sa.Integer))'
    project.write(
        "app/migrations/versions/b2_price.py",
        REVISION.format(
            revision="b2", down="a1", upgrade=add, downgrade='op.drop_column("items", "price")'
        ),
    )
    second, _ = project.deploy(revision="r2")
    heads = {e["release"]: e.get("schema") for e in project.log() if e["event"] == "deploy"}
    assert heads == {first.release: ["a1"], second.release: ["b2"]}

    def columns() -> list[str]:
        with sqlite3.connect(database) as db:
            return [row[1] for row in db.execute("pragma table_info(items)")]

    assert columns() == ["id", "price"]
    done = project.cli("rollback", "--env", "dev")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reversed the migrations" in done.stdout + done.stderr
    assert project.current() == first.release
    assert columns() == ["id"]  # downgraded to a1 before the switch
    assert project.log()[-1]["schema"] == ["a1"]
