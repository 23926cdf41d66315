"""The example project's tasks: deploylib's (`invoke deploy --env=dev`, `invoke rollback
--env=dev`, `invoke status --env=dev`, ...) next to one of its own, `invoke stop`, which stops
the example app a dev deploy started. A project adds deploylib's tasks to its own the same way.
"""

import os
import signal
from pathlib import Path

from invoke import Collection, task

from deploylib.tasks import ns as deploylib_tasks


@task
def stop(c, env="dev"):
    """Stop the example app (gunicorn) that `invoke deploy --env=ENV` started on this machine."""
    pidfile = Path(".deploy") / env / "shared" / "gunicorn.pid"
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        print(f"the example app of {env} is not running")
        return
    print(f"stopped the example app of {env} (gunicorn, pid {pid})")


ns = Collection(stop, *deploylib_tasks.tasks.values())
