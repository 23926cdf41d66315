"""Deploys the bundled example app (examples/hello) and serves it with gunicorn on 127.0.0.1.

The build archives examples/hello as the deploy's commit has it (``git archive``): what is
deployed is what was committed, whatever is edited in the working tree; ``--revision`` picks
another commit.

``gunicorn(...)`` (deploylib.recipes) starts gunicorn from ``current`` on the first deploy; later
deploys (and a rollback) start a new master on the new release with USR2, then stop the old
one gracefully once the new one's workers are up: no request fails.
"""

from deploylib import Pipeline, build, http, push, verify
from deploylib.recipes import gunicorn

PORT = "${HELLO_PORT:-8000}"

pipeline = Pipeline(
    build(git="examples/hello"),
    push(),
    gunicorn("app:app", bind=f"127.0.0.1:{PORT}", workers=2),
    verify(
        http(f"http://{{host_address}}:{PORT}/health", contains="{release}"),
        attempts=20,
        wait=0.25,
        deadline=30,
    ),
)
