"""Run the `baseliner` console script in-process, as a user types it: its real invoke Program, its
exit code, and what it printed on stdout and stderr."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def baseliner(root: Path, *argv: str, cwd: Path | None = None) -> Ran:
    """`baseliner ARGV...` with BASELINER_ROOT=root, run by the console script's Program."""
    from invoke import Program

    from baseliner import __version__
    from baseliner.tasks import namespace

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = os.environ.get("BASELINER_ROOT"), Path.cwd()
    os.environ["BASELINER_ROOT"] = str(root)
    code = 0
    try:
        os.chdir(cwd or root)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            program = Program(namespace=namespace, name="baseliner", binary="baseliner", version=__version__)
            try:
                program.run(["baseliner", *argv])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(saved_cwd)
        if saved_env is None:
            os.environ.pop("BASELINER_ROOT", None)
        else:
            os.environ["BASELINER_ROOT"] = saved_env
    return Ran(code, out.getvalue(), err.getvalue())
