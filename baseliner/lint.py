"""Checks of a built environment before it is packed.

Findings name the packages and files and say how to fix them. Errors stop the build; warnings are
listed in the summary. What is checked:

* pip distributions that overwrite files of conda packages, or shadow a conda package of the same
  (normalised) name — conda numpy 1.24 and pip numpy 1.26 in one env;
* editable installs: `direct_url.json` with `dir_info.editable`, `.egg-link` files, and `.pth`
  files that add directories outside the prefix;
* files that conda-meta lists but that are missing or changed (sha256 / size against the record);
* a prefix longer than a binary prefix placeholder allows (the file cannot be relocated there);
* symlinks that point outside the prefix.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .envs import conda_records
from .errors import LintError, first_few
from .pack import sha256_file
from .pypi import normalise


@dataclass(frozen=True)
class LintFinding:
    severity: Literal["error", "warning"]
    check: str
    message: str
    fix: str


@dataclass(frozen=True)
class PipDist:
    name: str
    version: str
    dist_info: Path
    files: tuple[str, ...]  # relative to the prefix


def _site_packages(prefix: Path) -> list[Path]:
    return sorted(prefix.glob("lib/python*/site-packages"))


def pip_distributions(prefix: Path, conda_files: set[str]) -> list[PipDist]:
    """dist-info directories that no conda package installed (i.e. pip / uv installed them)."""
    dists = []
    for site in _site_packages(prefix):
        for info in sorted(site.glob("*.dist-info")):
            rel_info = info.relative_to(prefix).as_posix()
            if f"{rel_info}/METADATA" in conda_files or f"{rel_info}/RECORD" in conda_files:
                continue
            meta = (info / "METADATA").read_text(errors="replace") if (info / "METADATA").is_file() else ""
            name = re.search(r"^Name: (.+)$", meta, re.M)
            version = re.search(r"^Version: (.+)$", meta, re.M)
            files: list[str] = []
            if (info / "RECORD").is_file():
                for line in (info / "RECORD").read_text(errors="replace").splitlines():
                    path = line.rsplit(",", 2)[0] if line else ""
                    if path:
                        files.append(
                            os.path.normpath((site / path).relative_to(prefix).as_posix())
                            if not path.startswith("/")
                            else path
                        )
            dists.append(
                PipDist(
                    name.group(1).strip() if name else info.name.split("-")[0],
                    version.group(1).strip() if version else "?",
                    info,
                    tuple(files),
                )
            )
    return dists


def _check_pip(prefix: Path, records: list[dict[str, Any]]) -> Iterable[LintFinding]:
    owner: dict[str, str] = {}
    conda_versions: dict[str, str] = {}
    for rec in records:
        label = f"{rec['name']} {rec['version']}"
        conda_versions[normalise(str(rec["name"]))] = str(rec["version"])
        for path in rec.get("files", []):
            owner[str(path)] = label
    for dist in pip_distributions(prefix, set(owner)):
        clobbered = sorted(p for p in dist.files if p in owner)
        if clobbered:
            victims = sorted({owner[p] for p in clobbered})
            yield LintFinding(
                "error",
                "pip-clobber",
                f"pip package {dist.name} {dist.version} overwrote files of conda package "
                f"{', '.join(victims)}: {', '.join(first_few(clobbered))}",
                f"drop {dist.name} from `pip:` (conda provides it) or from `conda:`",
            )
        elif normalise(dist.name) in conda_versions:
            yield LintFinding(
                "error",
                "pip-shadow",
                f"pip package {dist.name} {dist.version} shadows conda package "
                f"{normalise(dist.name)} {conda_versions[normalise(dist.name)]}",
                f"keep one of them: remove {dist.name} from `pip:` or from `conda:`",
            )


def _check_editables(prefix: Path) -> Iterable[LintFinding]:
    for site in _site_packages(prefix):
        for direct in sorted(site.glob("*.dist-info/direct_url.json")):
            try:
                data = json.loads(direct.read_text())
            except ValueError:
                continue
            if data.get("dir_info", {}).get("editable"):
                yield LintFinding(
                    "error",
                    "editable",
                    f"{direct.parent.name} is an editable install of {data.get('url', '?')}",
                    "install it as a normal package (a wheel) or move it to an overlay",
                )
        for link in sorted(site.glob("*.egg-link")):
            yield LintFinding(
                "error",
                "editable",
                f"{link.name} is an editable (develop) install",
                "install the package normally instead of `setup.py develop` / `pip install -e`",
            )
        for pth in sorted(site.glob("*.pth")):
            for line in pth.read_text(errors="replace").splitlines():
                line = line.strip()
                if not line or line.startswith(("#", "import ")):
                    continue
                target = (site / line).resolve()
                if not target.is_relative_to(prefix.resolve()):
                    yield LintFinding(
                        "error",
                        "editable",
                        f"{pth.name} adds {line} (outside the prefix) to sys.path",
                        "remove the .pth file or install the package into the environment",
                    )


def _check_conda_files(
    prefix: Path, records: list[dict[str, Any]], targets: Iterable[str]
) -> Iterable[LintFinding]:
    longest = max((len(t) for t in targets), default=len(str(prefix)))
    for rec in records:
        label = f"{rec['name']} {rec['version']}"
        paths = rec.get("paths_data", {}).get("paths", [])
        missing, changed, too_long = [], [], []
        for entry in paths:
            rel = entry["_path"]
            full = prefix / rel
            if entry.get("path_type") == "softlink":
                if not full.is_symlink():
                    missing.append(rel)
                continue
            if entry.get("path_type") not in (None, "hardlink"):
                continue
            if not full.is_file():
                missing.append(rel)
                continue
            expected = entry.get("sha256_in_prefix") or (
                None if entry.get("prefix_placeholder") else entry.get("sha256")
            )
            if expected and sha256_file(full) != expected:
                changed.append(rel)
            placeholder = entry.get("prefix_placeholder")
            if placeholder and entry.get("file_mode") == "binary" and longest > len(placeholder):
                too_long.append(f"{rel} (placeholder {len(placeholder)} chars)")
        if missing:
            yield LintFinding(
                "error",
                "missing-file",
                f"{label}: files listed in conda-meta are missing: {', '.join(first_few(missing))}",
                "rebuild the environment; something deleted package files",
            )
        if changed:
            yield LintFinding(
                "error",
                "changed-file",
                f"{label}: files differ from conda-meta: {', '.join(first_few(changed))}",
                "rebuild the environment; a later install step modified package files",
            )
        if too_long:
            yield LintFinding(
                "error",
                "prefix-length",
                f"{label}: prefix of {longest} chars is longer than the binary placeholder of {', '.join(first_few(too_long))}",
                "choose a shorter env prefix (image.prefix or the build directory)",
            )


def _check_symlinks(prefix: Path) -> Iterable[LintFinding]:
    root = prefix.resolve()
    escaping = []
    for dirpath, dirnames, filenames in os.walk(prefix):
        for name in [*filenames, *dirnames]:
            path = Path(dirpath, name)
            if path.is_symlink():
                target = os.readlink(path)
                resolved = (
                    Path(os.path.normpath(path.parent / target))
                    if not target.startswith("/")
                    else Path(target)
                )
                if not resolved.is_relative_to(root):
                    escaping.append(f"{path.relative_to(prefix)} -> {target}")
    if escaping:
        yield LintFinding(
            "error",
            "symlink-escape",
            f"symlinks point outside the prefix: {', '.join(first_few(sorted(escaping)))}",
            "make the links relative to files inside the environment",
        )


def lint_env(prefix: Path, relocation_targets: Iterable[str] = ()) -> list[LintFinding]:
    """Every finding for the environment at `prefix` (see the module docstring)."""
    prefix = prefix.resolve()
    records = conda_records(prefix)
    targets = [str(prefix), *relocation_targets]
    findings = [
        *_check_pip(prefix, records),
        *_check_editables(prefix),
        *_check_conda_files(prefix, records, targets),
        *_check_symlinks(prefix),
    ]
    return sorted(findings, key=lambda f: (f.severity != "error", f.check, f.message))


def raise_on_errors(name: str, findings: list[LintFinding], rebuild: str) -> None:
    """Raise a LintError listing the error findings; `rebuild` is the command that builds again."""
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise LintError(
            f"environment of {name!r} has {len(errors)} problem(s) that must be fixed before packing",
            details=[f"[{f.check}] {f.message} — fix: {f.fix}" for f in errors],
            detail_limit=8,
            hint=f"fix the spec, then run `{rebuild}` again",
        )
