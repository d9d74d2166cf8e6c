"""Parse commands with the real invoke programs, without running them.

Run as `python -m tests.support.parse_commands ROOT` with a JSON list of argv lists on stdin
(`["invoke", "lock", "demo"]` or `["baseliner", ...]`). `invoke` loads ROOT/tasks.py as the invoke
binary does; `baseliner` is the console script's Program. Prints, per command, the parsed tasks and
their arguments, or the parser's error.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys

from invoke import Program
from invoke.exceptions import Exit, ParseError


def parse(argv: list[str], root: str) -> dict[str, object]:
    if argv[0] == "invoke":
        program = Program(binary="invoke")
        argv = ["invoke", "--search-root", root, *argv[1:]]
    else:
        from baseliner.tasks import namespace

        program = Program(namespace=namespace, name="baseliner", binary="baseliner")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            program.create_config()
            program.parse_core(argv)
            program.parse_collection()
            program.parse_tasks()
            program.parse_cleanup()  # --help, --list, and no task given
    except ParseError as exc:
        return {"error": str(exc)}
    except Exit as exc:
        if exc.code:
            return {"error": f"exit {exc.code}: {exc.message or ''}"}
        return {"tasks": []}
    tasks = [
        {"task": ctx.name, "args": {k: a.value for k, a in ctx.args.items() if a.got_value}}
        for ctx in program.tasks
    ]
    return {"tasks": tasks}


def main() -> None:
    root = sys.argv[1]
    commands = json.load(sys.stdin)
    print(json.dumps([parse(argv, root) for argv in commands], default=str))


if __name__ == "__main__":
    main()
