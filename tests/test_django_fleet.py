"""A real Django project on three SSH hosts behind nginx, under load.

The project is made here with ``django-admin startproject`` (one app, one model, two migrations);
its database is one sqlite file that the three hosts share (they share this machine's file
system outside ``/srv``); host h2 has the role ``db``. Release 1 has migration 0001 and a
dependency ``appdep`` 1.0; release 2 adds migration 0002 and ``appdep`` 2.0. Requests go through
nginx on 127.0.0.1 to the hosts' gunicorns (``deploylib.recipes.gunicorn``) the whole time.

Then release 2's code again, and a rollback with ``migrate(undo="django")``, which reverses
0002 in the live release before switching. The strategy is a canary (h1 first, its checks
repeated for a second under the load, then the others): a canary promotion and rollbacks under
load with gunicorn replaced in place (USR2).

Wheels: Django and gunicorn from /opt/deploylib-test/wheels (.ci/run downloads them), appdep made
here; no index is contacted (PIP_NO_INDEX, PIP_FIND_LINKS)."""

from __future__ import annotations

import contextlib
import http.client
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Fleet
from tests.testbed.load import Load
from tests.testbed.nginx import nginx
from tests.testbed.offline_wheels import WHEELS, offline_env, tools_python
from tests.wheels import make_wheel

pytestmark = pytest.mark.slow

PIPELINE = """\
from deploylib import Pipeline, build, http, migrate, push, python_env, verify
from deploylib.recipes import gunicorn

pipeline = Pipeline(
    build("tar -czf {{artifact}} --exclude=__pycache__ -C app ."),
    push(),
    python_env(uv={uv!r}),
    migrate(
        ".venv/bin/python manage.py migrate --no-input && uname -n >> {ran}",
        schema="django",
    ),
    gunicorn(
        "mysite.wsgi:application",
        bind="0.0.0.0:8000",
        workers=2,
        args=["--access-logfile", "{{shared_path}}/log/access.log"],
    ),
    verify(http("http://{{host_address}}:8000/health", contains="{{release}}"), attempts=60,
           wait=0.25, deadline=60),
)
"""

VIEWS = """\
from pathlib import Path

from django.http import HttpResponse

from shop.models import Item


def release() -> str:
    return Path("REVISION").read_text().split()[0]


def index(request):
    return HttpResponse(f"hello from {release()}")


def health(request):
    import appdep  # a dependency of the release, not of the tools that make migrations

    return HttpResponse(f"{release()} appdep={appdep.VERSION} items={Item.objects.count()}")
"""


def make_project(app: Path, python: Path, database: Path) -> None:
    def manage(*args: str) -> None:
        subprocess.run([str(python), "manage.py", *args], cwd=app, check=True, capture_output=True)

    app.mkdir(parents=True)
    subprocess.run(
        [str(python), "-m", "django", "startproject", "mysite", str(app)],
        check=True,
    )
    manage("startapp", "shop")
    settings = app / "mysite" / "settings.py"
    text = settings.read_text()
    text = text.replace("ALLOWED_HOSTS = []", 'ALLOWED_HOSTS = ["*"]')
    text = text.replace(
        "'django.contrib.staticfiles',", "'django.contrib.staticfiles',\n    'shop',"
    )
    text = text.replace("BASE_DIR / 'db.sqlite3'", repr(str(database)))
    settings.write_text(text)
    (app / "shop" / "models.py").write_text(
        "from django.db import models\n\n\nclass Item(models.Model):\n"
        "    name = models.CharField(max_length=50)\n"
    )
    (app / "shop" / "views.py").write_text(VIEWS)
    (app / "mysite" / "urls.py").write_text(
        "from django.urls import path\n\nfrom shop import views\n\n"
        'urlpatterns = [path("", views.index), path("health", views.health)]\n'
    )
    manage("makemigrations", "shop")


def stop_gunicorns(fleet: Fleet) -> None:
    for host in fleet.hosts.hosts:
        pidfile = host.srv / "demo" / "shared" / "gunicorn.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)


def test_a_django_project_on_three_hosts_behind_nginx(
    fleet_of: Callable[[int], Fleet], tmp_path: Path
) -> None:
    if not list(WHEELS.glob("django-*.whl")) or not list(WHEELS.glob("gunicorn-*.whl")):
        pytest.skip(f"no Django and gunicorn wheels in {WHEELS} (.ci/run downloads them)")
    fleet = fleet_of(3)
    db_host = fleet.hosts.hosts[1]
    # a canary with a bake: h1 first, checked for a second, then the other two
    fleet.configure(
        roles={db_host.index: ["db"]},
        extra_ssh='[environments.fleet.strategy]\nkind = "canary"\nbake = 1\nwait = 0.25\n',
    )
    project = fleet.project
    ours = tmp_path / "ourwheels"
    make_wheel(ours, "appdep", "1.0")
    make_wheel(ours, "appdep", "2.0")
    env = offline_env(tmp_path / "cache", ours)
    shared = tmp_path / "shared-by-hosts"
    shared.mkdir()
    ran = shared / "migrated-on"
    python = tools_python(tmp_path)
    app = project.root / "app"
    shutil.rmtree(app)
    make_project(app, python, shared / "db.sqlite3")
    (app / "requirements.txt").write_text("django\ngunicorn\nappdep==1.0\n")
    project.write("pipelines/web.py", PIPELINE.format(uv=shutil.which("uv"), ran=str(ran)))

    def deploylib(*args: str) -> subprocess.CompletedProcess[str]:
        return project.cli(*args, env=env, timeout=300)

    def on_every_host(path: str) -> set[str]:
        return {get_from(h.address, path) for h in fleet.hosts.hosts}

    try:
        first = deploylib("deploy", "--env", "fleet")
        assert first.returncode == 0, first.stdout + first.stderr
        release_1 = fleet.current(1)
        assert on_every_host("/health") == {f"{release_1} appdep=1.0 items=0"}

        # release 2: a new migration and a new version of a dependency
        (app / "shop" / "models.py").write_text(
            "from django.db import models\n\n\nclass Item(models.Model):\n"
            "    name = models.CharField(max_length=50)\n"
            "    price = models.IntegerField(default=0)\n"
        )
        subprocess.run(
            [str(python), "manage.py", "makemigrations", "shop", "--name", "price"],
            cwd=app,
            check=True,
            capture_output=True,
        )
        (app / "requirements.txt").write_text("django\ngunicorn\nappdep==2.0\n")
        servers = [f"{h.address}:8000" for h in fleet.hosts.hosts]
        with nginx(tmp_path, servers=servers) as proxy:
            with Load(proxy.port) as load:
                load.wait_for_answers(20)
                second = deploylib("deploy", "--env", "fleet")
                load.wait_for_answers(20)
                assert second.returncode == 0, second.stdout + second.stderr
                assert "baked 1 s" in second.stdout, second.stdout
                release_2 = fleet.current(1)
                assert set(fleet.currents().values()) == {release_2}
                assert on_every_host("/health") == {f"{release_2} appdep=2.0 items=0"}

                # the live database has 0002_price, which release 1 does not know
                refused = deploylib("rollback", "--env", "fleet")
                assert refused.returncode == 1, refused.stdout + refused.stderr
                assert "shop.0002_price" in refused.stdout + refused.stderr
                assert set(fleet.currents().values()) == {release_2}

                back = deploylib("rollback", "--env", "fleet", "--yes")
                load.wait_for_answers(20)
                assert back.returncode == 0, back.stdout + back.stderr
            answered = sum(load.bodies.values())
            print(f"through nginx: {answered} answered, {len(load.failures)} failed")
            assert load.failures == []
            assert load.bodies[f"hello from {release_1}"] > 0
            assert load.bodies[f"hello from {release_2}"] > 0
        assert set(fleet.currents().values()) == {release_1}
        assert on_every_host("/health") == {f"{release_1} appdep=1.0 items=0"}
        # migrations ran once per deploy, on the db host only
        assert ran.read_text().split() == [db_host.name, db_host.name]

        # exec: on the db host only, in the live release, with its environment
        query = (
            "from django.db import connection; c = connection.cursor(); "
            "c.execute(\"select name from django_migrations where app = 'shop' order by id\"); "
            "print(*[row[0] for row in c.fetchall()])"
        )
        shown = deploylib(
            "exec", "--env", "fleet", "--roles", "db", "--",
            f".venv/bin/python manage.py shell -c {shlex.quote(query)}",
        )  # fmt: skip
        assert shown.returncode == 0, shown.stdout + shown.stderr
        # the db host only; the database keeps 0002_price (gone back with --yes)
        lines = shown.stdout.splitlines()
        assert all(line.startswith(f"{db_host.name} | ") for line in lines), shown.stdout
        assert lines[-1] == f"{db_host.name} | 0001_initial 0002_price", shown.stdout

        # the same code again, then back to release 1 with the pipeline reversing 0002 first
        third = deploylib("deploy", "--env", "fleet")
        assert third.returncode == 0, third.stdout + third.stderr
        assert ran.read_text().split() == [db_host.name] * 3
        pipeline = project.root / "pipelines" / "web.py"
        pipeline.write_text(
            pipeline.read_text().replace('schema="django",', 'schema="django", undo="django",')
        )
        undone = deploylib("rollback", "--env", "fleet")
        assert undone.returncode == 0, undone.stdout + undone.stderr
        assert "reversed the migrations" in undone.stdout + undone.stderr
        assert set(fleet.currents().values()) == {release_1}
        again = deploylib(
            "exec", "--env", "fleet", "--roles", "db", "--",
            f".venv/bin/python manage.py shell -c {shlex.quote(query)}",
        )  # fmt: skip
        assert again.stdout.splitlines()[-1] == f"{db_host.name} | 0001_initial", again.stdout
        assert on_every_host("/health") == {f"{release_1} appdep=1.0 items=0"}

        # logs: each host's own access log, by name
        logs = deploylib("logs", "--env", "fleet", "--lines", "1", "log/access.log")
        assert logs.returncode == 0, logs.stdout + logs.stderr
        for host in fleet.hosts.hosts:
            last = (host.srv / "demo" / "shared" / "log" / "access.log").read_text()
            mine = [line for line in logs.stdout.splitlines() if line.startswith(f"{host.name} |")]
            assert mine == [f"{host.name} | {last.splitlines()[-1]}"], logs.stdout
    finally:
        stop_gunicorns(fleet)


def get_from(address: str, path: str) -> str:
    connection = http.client.HTTPConnection(address, 8000, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode()
        assert response.status == 200, body[:500]
        return body
    finally:
        connection.close()
