"""``migrate(...)``: the database's migrations, once per deploy, and, with ``schema=``, the
migration state they leave, recorded with the release so that a rollback knows what the live
database has beyond the release it goes back to (see ``schema_state``)."""

from __future__ import annotations

from dataclasses import dataclass

from deploylib import schema_state
from deploylib.commands import Operation
from deploylib.context import StepContext
from deploylib.steps.builtin import Run


@dataclass(frozen=True)
class Migrate(Run):
    """``Run`` once (role ``db`` first), then, with ``schema``, the command that prints the
    migration state: ``"django"``, ``"alembic"`` or a command of the user's, one migration a
    line. ``undo`` reverses what a rollback target does not know (``"django"``: computed per
    app; ``"alembic"``: a downgrade to the target's head; or the user's command), run in the
    live release before a rollback switches."""

    schema: str | None = None
    undo: str | None = None

    def operations(self, ctx: StepContext) -> list[Operation]:
        ops = super().operations(ctx)
        if self.schema:
            script = schema_state.schema_script(self.schema)
            ops.append(ctx.command(script, cwd=self.cwd, description="schema", sudo=self.sudo))
        return ops

    def schema_from(self, outputs: list[str]) -> tuple[str, ...] | None:
        if not self.schema or not outputs:
            return None
        return schema_state.parse(self.schema, outputs[-1])

    def templates(self) -> list[str]:
        extra = [self.undo] if self.undo and self.undo not in schema_state.UNDO_KINDS else []
        return [*super().templates(), *extra]
