"""Deploys the bundled example app (examples/hello) and serves it with gunicorn on 127.0.0.1.

The build archives examples/hello as the deploy's commit has it (``git archive``): what is
deployed is what was committed, whatever is edited in the working tree; ``--revision`` picks
another commit.

The first deploy starts gunicorn from ``current``; later deploys send it HUP, which starts
workers on the new release and lets the old ones finish their requests.
"""

from deploylib import Pipeline, build, http, push, switch, verify

SERVE = """\
pidfile={shared_path}/gunicorn.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  kill -HUP "$(cat "$pidfile")"
else
  gunicorn --chdir {current_path} --bind "127.0.0.1:${HELLO_PORT:-8000}" --workers 2 \\
    --pid "$pidfile" --daemon --error-logfile {shared_path}/log/gunicorn.log app:app
fi
"""

pipeline = Pipeline(
    build(git="examples/hello"),
    push(),
    switch(restart=SERVE),
    verify(
        http("http://{host_address}:${HELLO_PORT:-8000}/health", contains="{release}"),
        attempts=20,
        wait=0.25,
        deadline=30,
    ),
)
