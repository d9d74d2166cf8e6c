"""What activating an environment sets: the exports of its `etc/conda/activate.d/*.sh` scripts.

Packages such as GDAL, PROJ, Java or CUDA put variables there, and `conda activate` (or
conda-pack's `bin/activate` in an unpacked tarball) sources them. An image has no activation, so
the build runs the scripts once against the built environment, with `CONDA_PREFIX` set as conda
sets it, and bakes what they export into the image's `ENV` (seen by `docker run`, `docker exec`
and a pod whose `command` replaces the entrypoint). The image's entrypoint sources them again at
start, for scripts that must run in the container.

A value holding the build's prefix is moved to the image's prefix; a variable a script prepends or
appends to (PATH) keeps the image's value around the added part (`ENV PATH="/opt/env/x:${PATH}"`).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ActivationError

ACTIVATE_DIR = "etc/conda/activate.d"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Set by the shell itself, not by a script.
_SHELL_OWN = {"_", "PWD", "OLDPWD", "SHLVL"}


@dataclass(frozen=True)
class EnvValue:
    """A variable's value in the image: `head`, then (when `inherits`) the value the image already
    has, then `tail`; a prepend to PATH is `EnvValue("/opt/env/x:", True)`."""

    head: str
    inherits: bool = False
    tail: str = ""

    def shown(self, name: str) -> str:
        return self.head + ("${" + name + "}" + self.tail if self.inherits else "")


def activation_scripts(prefix: Path) -> list[Path]:
    """The prefix's `etc/conda/activate.d/*.sh` scripts, in the order conda runs them."""
    return sorted((prefix / ACTIVATE_DIR).glob("*.sh"))


def _environ(argv: list[str], env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(argv, env=env, capture_output=True, timeout=120)
    if out.returncode != 0:
        raise ActivationError(
            "an activation script of the environment failed",
            details=[*out.stderr.decode(errors="replace").strip().splitlines()[-5:]],
            hint="check the package's etc/conda/activate.d script",
        )
    return dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)


def activation_env(prefix: Path, image_prefix: str) -> dict[str, EnvValue]:
    """The variables the activation scripts of `prefix` set or change, as the image should carry them."""
    scripts = activation_scripts(prefix)
    if not scripts:
        return {}
    with tempfile.TemporaryDirectory(prefix="baseliner-activate-") as home:
        base = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "CONDA_PREFIX": str(prefix)}
        before = _environ(["env", "-0"], base)
        source = 'for script in "$@"; do . "$script" || exit 1; done; env -0'
        after = _environ(["bash", "-c", source, "activate", *map(str, scripts)], base)
    changed: dict[str, EnvValue] = {}
    for name, value in sorted(after.items()):
        if name in _SHELL_OWN or before.get(name) == value or name == "CONDA_PREFIX":
            continue
        if not _NAME.match(name) or any(ord(ch) < 0x20 for ch in value):
            raise ActivationError(
                f"activation variable {name[:40]!r} cannot be baked into an image",
                details=["its name is not a shell name, or its value holds a newline or control character"],
            )
        old = before.get(name)
        if old and value.endswith(old) and len(value) > len(old):
            changed[name] = EnvValue(_moved(value[: -len(old)], prefix, image_prefix), True)
        elif old and value.startswith(old) and len(value) > len(old):
            changed[name] = EnvValue("", True, _moved(value[len(old) :], prefix, image_prefix))
        else:
            changed[name] = EnvValue(_moved(value, prefix, image_prefix))
    return changed


def _moved(value: str, prefix: Path, image_prefix: str) -> str:
    return value.replace(str(prefix), image_prefix).replace(os.path.realpath(prefix), image_prefix)
