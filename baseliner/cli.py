"""The `baseliner` console script: the same invoke collection as the repo's tasks.py."""

from __future__ import annotations

from invoke import Program

from . import __version__
from .tasks import namespace


def main() -> None:
    """The `baseliner` console script."""
    Program(namespace=namespace, name="baseliner", binary="baseliner", version=__version__).run()
