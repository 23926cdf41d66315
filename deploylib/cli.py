"""The ``deploylib`` program: one task of ``deploylib.tasks.ns`` per run, with the program's own
options only. Invoke's core flags (``--dry``, ``-f``, ``--hide``, ``--pty``, ...) mean nothing to
a deploy and some would mislead (``--dry`` is not ``--dry-run``), so they are not offered: like
any unknown option or stray word they are a usage error, exit 2, with the task's usage.
"""

from __future__ import annotations

import inspect
import signal
import sys
from types import FrameType

from invoke.exceptions import Exit, ParseError, UnexpectedExit
from invoke.parser.argument import Argument
from invoke.parser.context import ParserContext
from invoke.program import Program

from deploylib import __version__
from deploylib.errors import EXIT_CONFIG
from deploylib.tasks import ns

#: the program's own options, before the task
PROGRAM_OPTIONS = (
    Argument(names=("help", "h"), optional=True, help="show this help, or a task's, and exit"),
    Argument(names=("version", "V"), kind=bool, default=False, help="show the version and exit"),
    Argument(names=("list", "l"), kind=bool, default=False, help="list the tasks and exit"),
)
USAGE = "Usage: deploylib [--config FILE] <task> [--task-options]"
#: the tasks that take words of their own, and the option those words fill: ``exec``'s command
#: after ``--``, ``logs``' PATHs (as words anywhere, or after ``--``)
TRAILING_WORDS = {"exec": "command", "logs": "path"}


class DeployProgram(Program):
    """Invoke's Program, narrowed to what deploylib users type."""

    #: the words after ``--``, as given (see ``TRAILING_WORDS``)
    trailing: tuple[str, ...] = ()

    def core_args(self) -> list[Argument]:
        return [
            Argument(
                names=a.names, kind=a.kind, default=a.default, help=a.help, optional=a.optional
            )
            for a in PROGRAM_OPTIONS
        ]

    def normalize_argv(self, argv: list[str] | None) -> None:
        """``deploylib --config FILE TASK ...`` is ``deploylib TASK --config FILE ...``."""
        super().normalize_argv(argv)
        words = list(self.argv)
        # what follows the first "--" word for word (Invoke keeps it only joined by spaces)
        self.trailing = tuple(words[words.index("--") + 1 :]) if "--" in words else ()
        head, rest = words[:1], words[1:]
        moved: list[str] = []
        while rest and rest[0].startswith("-") and rest[0] != "--":
            word = rest.pop(0)
            if word == "--config" and rest:
                moved += [word, rest.pop(0)]
            elif word.startswith("--config="):
                moved.append(word)
            else:
                head.append(word)
        if rest and rest[0] != "--" and moved:
            rest[1:1] = moved
        else:
            head += moved  # no task: the parser names the option it does not know
        self.argv = head + rest

    def parse_core(self, argv: list[str] | None) -> None:
        self.normalize_argv(argv)
        self.parse_core_args()
        if self.args.version.value:
            print(f"deploylib {__version__}")
            raise Exit

    def parse_tasks(self) -> None:
        """``logs --env E a.log b.log``: the words that are no option nor an option's value
        become ``--path`` options (Invoke would take them for task names)."""
        words = list(self.core.unparsed)
        if words and TRAILING_WORDS.get(words[0]) == "path":
            # the options that take a value: the task's parameters that are not flags (a
            # parser made here would use up the options' help: Invoke pops it when it reads it)
            parameters = inspect.signature(self.collection[words[0]].body).parameters
            valued = {f"--{p.name.replace('_', '-')}" for p in parameters.values()}
            valued -= {
                f"--{p.name.replace('_', '-')}" for p in parameters.values() if p.default is False
            }
            out, waiting = words[:1], False
            for word in words[1:]:
                if waiting or word.startswith("-"):
                    out.append(word)
                    waiting = not waiting and word in valued
                else:
                    out += ["--path", word]
            self.core.unparsed = out
        try:
            super().parse_tasks()
        except ValueError as exc:  # Invoke's int() of an option's value, not a ParseError
            name = words[0] if words else ""
            body = self.collection[name].body if name in self.collection.task_names else None
            numbers = [
                f"--{p.name.replace('_', '-')}"
                for p in (inspect.signature(body).parameters.values() if body else ())
                if type(p.default) is int
            ]
            value = str(exc).rpartition(": ")[2]
            parser = getattr(self, "parser", None)
            context = parser.contexts.get(name) if parser is not None else None
            raise ParseError(
                f"{' or '.join(numbers) or 'an option'}: not a whole number: {value}", context
            ) from None

    def _take_trailing(self) -> None:
        """The words after ``--`` go to the task that takes them, or are a usage error."""
        task = self.tasks[0] if self.tasks else None
        option = TRAILING_WORDS.get(getattr(task, "name", "") or "")
        if not self.trailing or task is None:
            if self.core.remainder:
                raise ParseError(f"unexpected words after '--': {self.core.remainder!r}", task)
            return
        if option is None:
            raise ParseError(f"unexpected words after '--': {self.core.remainder!r}", task)
        argument = task.args[option]
        if option == "path":
            for word in self.trailing:
                argument.value = word
            return
        from deploylib.errors import ConfigError
        from deploylib.remote.oneoff import command_of

        try:
            argument.value = command_of(argument.value, self.trailing)
        except ConfigError as exc:
            raise ParseError(exc.message, task) from None

    def parse_cleanup(self) -> None:
        # the program's options are read again here: Invoke also takes them after the task
        # (``deploy --env dev -V``), where they must stop the task just as well
        if self.args.version.value:
            print(f"deploylib {__version__}")
            raise Exit
        self._take_trailing()
        wanted = self.args.help.value
        if wanted is True:
            self.print_help()
            raise Exit
        if wanted:
            if wanted not in self.parser.contexts:
                raise ParseError(f"no task named {wanted!r}")
            self.print_task_help(wanted)
            raise Exit
        if self.args.list.value:
            self.list_tasks()
            raise Exit
        if not self.tasks:
            self.print_help()
            raise Exit
        if len(self.tasks) > 1:
            names = " ".join(t.name for t in self.tasks if t.name)
            raise ParseError(f"one task at a time (got: {names})", self.tasks[0])

    def update_config(self, merge: bool = True) -> None:
        # no core flags feed the config: deploylib's tasks take their settings as options
        if merge:
            self.config.merge()

    def print_help(self) -> None:
        print(USAGE)
        print("")
        print("Options:")
        self.print_columns(self.initial_context.help_tuples())
        self.list_tasks()
        print("A task's options: deploylib <task> --help")

    def print_task_help(self, name: str) -> None:
        print(f"Usage: deploylib {name} [--options]")
        print("")
        for line in (inspect.getdoc(self.collection[name]) or "").splitlines():
            print(self.leading_indent + line if line.strip() else "")
        print("")
        print("Options:")
        self.print_columns(self.parser.contexts[name].help_tuples())

    def run(self, argv: list[str] | None = None, exit: bool = True) -> None:
        """Run the one task; a usage error exits 2 with the task's usage (or the program's)."""
        try:
            self.create_config()
            self.parse_core(argv)
            self.parse_collection()
            self.parse_tasks()
            self.parse_cleanup()
            self.update_config()
            self.execute()
        except ParseError as exc:
            print(f"deploylib: {exc}", file=sys.stderr)
            print(_usage_of(exc.context), file=sys.stderr)
            if exit:
                sys.exit(EXIT_CONFIG)
        except Exit as exc:
            if exc.message:
                print(exc.message, file=sys.stderr)
            if exit:
                sys.exit(exc.code)
        except UnexpectedExit as exc:  # pragma: no cover - tasks map their own failures
            if exit:
                sys.exit(exc.result.exited)
        except KeyboardInterrupt:
            sys.exit(1)


def _usage_of(context: ParserContext | None) -> str:
    name = getattr(context, "name", None)
    if name:
        return f"Usage: deploylib {name} [--options]  (deploylib {name} --help)"
    return f"{USAGE}  (deploylib --help)"


program = DeployProgram(namespace=ns, name="deploylib", binary="deploylib", version=__version__)


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM and SIGHUP (a closed terminal) get the same orderly stop as Ctrl-C: unfinished
    # releases removed, switched hosts put back, locks released
    raise KeyboardInterrupt


def main() -> None:
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, _terminate)
    program.run()  # each task freezes what it leaves before the exit (``tasks._run``)
