"""What a smoke test of a built environment checks, worked out from the environment itself.

For every package the spec asks for (conda and pip), the modules to import and the entry points to
run. Modules come from a package-to-module map for well-known names (scikit-learn -> sklearn) and
otherwise from the files the package installed into site-packages; entry points from the package's
`info/link.json` (noarch python conda packages) or `entry_points.txt` (pip distributions).
"""

from __future__ import annotations

import configparser
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .envs import conda_records
from .lint import pip_distributions
from .pypi import normalise

# Distribution name -> importable module, where they differ and files don't say it plainly.
MODULE_MAP = {
    "scikit-learn": "sklearn",
    "scikit-image": "skimage",
    "pytorch": "torch",
    "pillow": "PIL",
    "matplotlib-base": "matplotlib",
    "seaborn-base": "seaborn",
    "python-dateutil": "dateutil",
    "pyyaml": "yaml",
    "beautifulsoup4": "bs4",
    "opencv": "cv2",
    "opencv-python": "cv2",
    "msgpack-python": "msgpack",
    "jupyterlab": "jupyterlab",
    "ipython": "IPython",
    "attrs": "attr",
    "protobuf": "google.protobuf",
}
NOT_IMPORTABLE = {"python", "pip", "setuptools-scm"}


@dataclass(frozen=True)
class SmokePlan:
    modules: tuple[str, ...]
    entry_points: tuple[str, ...]

    def script(self) -> str:
        """A python program that imports every module and prints a JSON report."""
        return (
            "import importlib, json, os, sys\n"
            f"mods = {list(self.modules)!r}\n"
            "failed = {}\n"
            "for m in mods:\n"
            "    try:\n"
            "        importlib.import_module(m)\n"
            "    except Exception as exc:\n"
            "        failed[m] = f'{type(exc).__name__}: {exc}'\n"
            "print(json.dumps({'uid': os.getuid(), 'prefix': sys.prefix, 'imported': [m for m in mods if m not in failed], 'failed': failed}))\n"
        )


def _top_level(files: list[str]) -> list[str]:
    tops = set()
    for path in files:
        match = re.match(r"^(?:lib/python[0-9.]+/)?site-packages/([^/]+)(/__init__\.py|\.py)$", path)
        if (
            match
            and not match.group(1).endswith((".dist-info", ".egg-info"))
            and match.group(1) != "__pycache__"
        ):
            tops.add(match.group(1).removesuffix(".py") if match.group(2) == ".py" else match.group(1))
    return sorted(tops)


def _conda_entry_points(cache: Path, record: dict[str, Any]) -> list[str]:
    pkg_dir = record.get("extracted_package_dir")
    candidates = [Path(str(pkg_dir))] if pkg_dir else []
    candidates.append(cache / f"{record['name']}-{record['version']}-{record['build']}")
    for directory in candidates:
        link = directory / "info" / "link.json"
        if link.is_file():
            data = json.loads(link.read_text())
            return [ep.split("=")[0].strip() for ep in data.get("noarch", {}).get("entry_points", [])]
    return []


def plan(prefix: Path, conda_specs: Sequence[str], pip_specs: Sequence[str], cache: Path) -> SmokePlan:
    """Modules and entry points of the packages the specs ask for, as installed at `prefix`."""
    from .engine import spec_name

    requested_conda = {normalise(spec_name(s)) for s in conda_specs}
    requested_pip = {normalise(re.split(r"[\s<>=!~;\[]", s, maxsplit=1)[0]) for s in pip_specs}
    modules: list[str] = []
    entry_points: list[str] = []
    records = conda_records(prefix)
    for rec in records:
        name = normalise(str(rec["name"]))
        if name not in requested_conda or name in NOT_IMPORTABLE:
            continue
        files = [str(f) for f in rec.get("files", [])]
        modules += [MODULE_MAP[name]] if name in MODULE_MAP else _top_level(files)
        entry_points += _conda_entry_points(cache, rec)
    conda_files = {str(f) for rec in records for f in rec.get("files", [])}
    for dist in pip_distributions(prefix, conda_files):
        name = normalise(dist.name)
        if name not in requested_pip:
            continue
        top = dist.dist_info / "top_level.txt"
        if name in MODULE_MAP:
            modules.append(MODULE_MAP[name])
        elif top.is_file():
            modules += [m for m in top.read_text().split() if not m.startswith("_")]
        else:
            modules += _top_level([re.sub(r"^lib/python[0-9.]+/", "", f) for f in dist.files])
        eps = dist.dist_info / "entry_points.txt"
        if eps.is_file():
            parser = configparser.ConfigParser()
            parser.read_string(eps.read_text())
            if parser.has_section("console_scripts"):
                entry_points += list(parser["console_scripts"])
    return SmokePlan(tuple(dict.fromkeys(modules)), tuple(dict.fromkeys(entry_points)))
