"""The org's PyPI mirror: the org channel's locked wheels as a PEP 503 "simple" index on disk.

An org that builds its conda channel from PyPI wheels serves pip the same wheels: `pip:` sections
of baselines and overlays lock and install from the mirror (`pip_mirror:` in baseliner.yaml), so a
build needs no network once `invoke channel` has run, and pip can only install what the org
vetted. The wheels are the ones the channel was converted from (hash-checked, from the channel's
wheel cache), each under its PEP 503 name, with its sha256 in the link as PEP 503 asks; pip reads
it from a `file://` URL.

uv is handed the mirror over loopback HTTP (`pypi`: from a `file://` index it would record, in
each dist-info, when its cache first unpacked the wheel).

The mirror is written into a scratch directory and renamed into place, so a reader never sees half
of it; a state file records the lock it was made from, and re-running with nothing changed does
nothing.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .atomic import Report, silent, write_atomic
from .concurrency import scratch
from .orgchannel import OrgChannel, read_pins
from .pypi import Pin, Wheel, download_wheels, normalise

STATE_FILE = ".baseliner-mirror.json"
MIRROR_FORMAT = 1


@dataclass(frozen=True)
class MirrorBuild:
    directory: Path
    wheels: int
    noop: bool


def _page(links: Sequence[tuple[str, str]]) -> str:
    """A PEP 503 page: one anchor per (href, text)."""
    anchors = "".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a><br>\n' for href, text in links)
    return f"<!DOCTYPE html>\n<html><head><title>Simple index</title></head><body>\n{anchors}</body></html>\n"


def _state(lock_text: str) -> dict[str, object]:
    return {"format": MIRROR_FORMAT, "lock_sha256": hashlib.sha256(lock_text.encode()).hexdigest()}


def mirror_is_fresh(directory: Path, lock_text: str) -> bool:
    """Whether `directory` holds the mirror of this lock, written whole."""
    try:
        return bool(json.loads((directory / STATE_FILE).read_text()) == _state(lock_text))
    except (OSError, ValueError):
        return False


def write_pip_mirror(
    directory: Path,
    pins: Sequence[Pin],
    wheels: Mapping[str, Wheel],
    lock_text: str,
    report: Report = silent,
) -> MirrorBuild:
    """Write the PEP 503 index of `wheels` (by pin name) at `directory`, replacing what is there."""
    if mirror_is_fresh(directory, lock_text):
        report(f"pip mirror at {directory} is up to date")
        return MirrorBuild(directory, len(pins), True)
    report(f"writing the pip mirror of {len(pins)} wheels at {directory}")
    directory.parent.mkdir(parents=True, exist_ok=True)
    with scratch(directory.parent, f"mirror-{directory.name}") as tmp:
        root = tmp / "simple"
        root.mkdir()
        projects: dict[str, list[Wheel]] = {}
        for pin in pins:
            projects.setdefault(normalise(pin.name), []).append(wheels[pin.name])
        for name, found in sorted(projects.items()):
            (root / name).mkdir()
            links = []
            for wheel in sorted(found, key=lambda w: w.path.name):
                target = root / name / wheel.path.name
                try:
                    os.link(wheel.path, target)  # the cache's file: no second copy on one filesystem
                except OSError:
                    shutil.copyfile(wheel.path, target)
                links.append((f"{wheel.path.name}#sha256={wheel.sha256}", wheel.path.name))
            (root / name / "index.html").write_text(_page(links))
        (root / "index.html").write_text(_page([(f"{name}/", name) for name in sorted(projects)]))
        write_atomic(root / STATE_FILE, json.dumps(_state(lock_text), sort_keys=True) + "\n")
        old = tmp / "old"
        if directory.exists():
            directory.rename(old)
        root.rename(directory)
    return MirrorBuild(directory, len(pins), False)


def mirror_org_channel(
    channel: OrgChannel, directory: Path, work_dir: Path, index_url: str | None, report: Report = silent
) -> MirrorBuild:
    """The pip mirror of the org channel's lock at `directory`; its wheels come from the channel's
    wheel cache in `work_dir` (fetched from `index_url`, hash-checked, where missing)."""
    pins = read_pins(channel)
    lock_text = channel.lock_path.read_text(encoding="utf-8")
    if mirror_is_fresh(directory, lock_text):
        report(f"pip mirror at {directory} is up to date")
        return MirrorBuild(directory, len(pins), True)
    wheels = download_wheels(pins, work_dir / "wheels", channel.spec.python, channel.spec.platform, index_url)
    return write_pip_mirror(directory, pins, wheels, lock_text, report)
