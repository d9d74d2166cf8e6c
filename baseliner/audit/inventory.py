"""Inventory: what each environment holds, read without conda.

Sources, each turned into an `EnvProfile`:

* a conda prefix: `conda-meta/*.json` (name, version, build, channel, files), pip distributions
  (dist-info not owned by a conda record: INSTALLER, direct_url.json), `conda-meta/history`
  (created, last changed), last use (atime of the prefix's python, where the filesystem keeps it),
  the baseline it declares (`etc/baseliner/baseline.json`);
* exported files from other machines: `conda list --explicit` output, `conda env export` YAML
  with or without build strings (and hand-written `environment.yml`), conda-lock files.

Parsing is tolerant: a line that cannot be read is reported (file and line) and skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import yaml

from ..lint import pip_distributions
from ..pypi import normalise
from ..yamlsource import parse_yaml

Source = Literal["conda", "pip"]
Kind = Literal["prefix", "export", "explicit", "conda-lock"]


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    build: str = ""
    channel: str = ""
    source: Source = "conda"
    size: int = 0  # bytes of its files in the prefix (0 when unknown, e.g. from an export)

    @property
    def key(self) -> str:
        return f"{self.source}:{self.name}=={self.version}"


@dataclass
class EnvProfile:
    name: str
    location: str
    kind: Kind
    packages: list[Package] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    created: datetime | None = None
    modified: datetime | None = None
    last_used: datetime | None = None
    owner: str = ""
    declared_baseline: dict[str, Any] | None = None
    unreadable: list[str] = field(default_factory=list)  # "file:line: text"

    @property
    def conda(self) -> list[Package]:
        return [p for p in self.packages if p.source == "conda"]

    @property
    def pip(self) -> list[Package]:
        return [p for p in self.packages if p.source == "pip"]


# --- prefixes ----------------------------------------------------------------------------------

_HISTORY_RE = re.compile(r"^==> (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) <==", re.M)


def _channel_of(record: dict[str, Any]) -> str:
    channel = str(record.get("channel") or "")
    if not channel and record.get("url"):
        channel = str(record["url"]).rsplit("/", 2)[0]
    channel = re.sub(r"/(noarch|(linux|osx|win)-[a-z0-9_]+)$", "", channel.rstrip("/"))
    return channel.removeprefix("https://conda.anaconda.org/").removeprefix("https://repo.anaconda.com/")


def _owner(path: Path) -> str:
    try:
        import pwd

        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (KeyError, ImportError, OSError):
        return str(path.stat().st_uid)


def scan_prefix(prefix: Path) -> EnvProfile:
    """Profile a conda prefix from its conda-meta records, pip metadata and history."""
    meta = prefix / "conda-meta"
    profile = EnvProfile(prefix.name, str(prefix), "prefix", owner=_owner(prefix))
    # Times first: reading a file below updates its atime (relatime), which is the last-use signal.
    stats = [p.stat() for p in (prefix / "bin" / "python", meta / "history", prefix) if p.exists()]
    if stats:
        profile.last_used = datetime.fromtimestamp(max(st.st_atime for st in stats), timezone.utc)
        profile.modified = datetime.fromtimestamp(max(st.st_mtime for st in stats), timezone.utc)
    records = []
    try:
        names = sorted(e.name for e in os.scandir(meta) if e.name.endswith(".json"))
    except OSError:
        names = []
    for name in names:
        path = os.path.join(meta, name)
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                records.append(json.loads(handle.read()))
        except ValueError as exc:
            profile.unreadable.append(f"{path}:{exc.lineno}: not JSON ({exc.msg})")  # type: ignore[attr-defined]
        except OSError as exc:
            profile.unreadable.append(f"{path}: {exc.strerror}")
    conda_files: set[str] = set()
    for rec in records:
        conda_files.update(map(str, rec.get("files", [])))
        size = sum([int(e.get("size_in_bytes") or 0) for e in rec.get("paths_data", {}).get("paths", [])])
        channel = _channel_of(rec)
        profile.packages.append(
            Package(
                str(rec.get("name", "?")),
                str(rec.get("version", "?")),
                str(rec.get("build", "")),
                channel,
                "conda",
                size,
            )
        )
        if channel and channel not in profile.channels:
            profile.channels.append(channel)
    for dist in pip_distributions(prefix, conda_files):
        size = 0
        for rel in dist.files:
            with contextlib.suppress(OSError):
                size += (prefix / rel).lstat().st_size
        profile.packages.append(Package(normalise(dist.name), dist.version, "", "pypi", "pip", size))
    history = meta / "history"
    if history.is_file():
        stamps = _HISTORY_RE.findall(history.read_text(errors="replace"))
        if stamps:
            profile.created = _parse_time(stamps[0])
            profile.modified = max(profile.modified or _parse_time(stamps[-1]), _parse_time(stamps[-1]))
    marker = prefix / "etc" / "baseliner" / "baseline.json"
    if marker.is_file():
        try:
            profile.declared_baseline = json.loads(marker.read_text())
        except ValueError:
            profile.unreadable.append(f"{marker}:1: not JSON")
    return profile


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)


# baseliner's own working directories (`.baseliner-undo`, `.baseliner-tmp.*`): the environments
# in them are consolidate's undo copies and half-made builds, not the fleet's.
OWN_DIRS = ".baseliner-"


def find_prefixes(root: Path) -> Iterator[Path]:
    """Conda prefixes at or below `root` (a prefix's own subdirectories are not searched, nor
    baseliner's own working directories)."""
    if (root / "conda-meta").is_dir():
        yield root
        return
    try:
        children = sorted(
            p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(OWN_DIRS)
        )
    except OSError:
        return
    for child in children:
        yield from find_prefixes(child)


# --- exported files ----------------------------------------------------------------------------

_EXPLICIT_RE = re.compile(
    r"^(?P<url>\S+/(?P<subdir>[^/\s]+)/(?P<fn>[^/\s#]+?)(?P<ext>\.tar\.bz2|\.conda))(?:#\S*)?\s*$"
)
_DIST_RE = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+)-(?P<build>[^-]+)$")


def parse_explicit(path: Path, text: str) -> EnvProfile:
    """An `@EXPLICIT` file's packages (name, version, build, channel from each URL)."""
    profile = EnvProfile(_env_name(path), str(path), "explicit")
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or line == "@EXPLICIT":
            continue
        match = _EXPLICIT_RE.match(line)
        dist = _DIST_RE.match(match.group("fn")) if match else None
        if not match or not dist:
            profile.unreadable.append(f"{path}:{number}: {line[:80]}")
            continue
        channel = (
            match.group("url")
            .rsplit("/", 2)[0]
            .removeprefix("https://conda.anaconda.org/")
            .removeprefix("https://repo.anaconda.com/")
        )
        profile.packages.append(
            Package(dist.group("name").lower(), dist.group("version"), dist.group("build"), channel)
        )
        if channel not in profile.channels:
            profile.channels.append(channel)
    return profile


_CONDA_DEP_RE = re.compile(r"^(?:(?P<channel>[^:\s]+)::)?(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<rest>.*)$")
_PIP_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(?:(?P<op>===|==|>=|<=|~=|!=|>|<)\s*(?P<version>[^\s;,]+))?"
)


def _conda_dep(text: str) -> Package | None:
    match = _CONDA_DEP_RE.match(text.strip())
    if not match:
        return None
    rest = match.group("rest").strip()
    version = build = ""
    if rest.startswith("="):
        parts = rest.lstrip("=").split("=")
        version = parts[0]
        build = parts[1] if len(parts) > 1 else ""
    elif rest:
        version = rest.replace(" ", "")
    return Package(match.group("name").lower(), version, build, match.group("channel") or "")


def _pip_dep(text: str) -> Package | None:
    text = text.strip()
    if not text or text.startswith("-"):
        return None  # --extra-index-url and friends
    if "://" in text or text.startswith(("git+", "file:")):
        egg = re.search(r"#egg=([A-Za-z0-9_.\-]+)", text)
        name = egg.group(1) if egg else text.rstrip("/").rsplit("/", 1)[-1].split("@")[0].removesuffix(".git")
        name = re.split(r"-\d", name, maxsplit=1)[0]
        return Package(normalise(name), "url", "", "", "pip")
    if " @ " in text:
        return Package(normalise(text.split(" @ ")[0]), "url", "", "", "pip")
    match = _PIP_RE.match(text)
    if not match:
        return None
    version = match.group("version") or ""
    return Package(
        normalise(match.group("name")),
        version if match.group("op") in ("==", "===") else (match.group("op") or "") + version,
        "",
        "pypi",
        "pip",
    )


def _yaml_data(path: Path, text: str, profile: EnvProfile) -> Any:
    """The YAML in `text`, or None with the reason (file:line) in `profile.unreadable`."""
    try:
        return parse_yaml(text, path, duplicate_keys=True).data
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        profile.unreadable.append(
            f"{path}:{mark.line + 1 if mark else 0}: not YAML ({getattr(exc, 'problem', exc)})"
        )
        return None


def parse_env_yaml(path: Path, text: str) -> EnvProfile:
    """`conda env export` output (with or without builds) or a hand-written environment.yml."""
    profile = EnvProfile(_env_name(path), str(path), "export")
    data = _yaml_data(path, text, profile)
    if profile.unreadable:
        return profile
    if not isinstance(data, dict):
        profile.unreadable.append(f"{path}:1: not a mapping")
        return profile
    profile.channels = [str(c) for c in data.get("channels") or [] if str(c) != "nodefaults"]
    lines = text.splitlines()
    pip_items: list[Any] = list(data.get("pip") or []) if isinstance(data.get("pip"), list) else []
    for item in data.get("dependencies") or []:
        if isinstance(item, dict):
            pip_items += list(item.get("pip") or [])
            continue
        package = _conda_dep(str(item))
        if package is None:
            profile.unreadable.append(f"{path}:{_line_of(lines, str(item))}: {str(item)[:80]}")
        else:
            profile.packages.append(package)
    seen_pip: set[str] = set()
    for item in pip_items:
        package = _pip_dep(str(item))
        if package is None:
            if not str(item).strip().startswith("-"):
                profile.unreadable.append(f"{path}:{_line_of(lines, str(item))}: {str(item)[:80]}")
            continue
        if package.key not in seen_pip:  # pip entries listed twice count once
            seen_pip.add(package.key)
            profile.packages.append(package)
    return profile


def parse_conda_lock(path: Path, text: str, platform: str = "linux-64") -> EnvProfile:
    """A conda-lock file's packages for `platform` (or its first platform)."""
    profile = EnvProfile(_env_name(path), str(path), "conda-lock")
    data = _yaml_data(path, text, profile)
    if not isinstance(data, dict):
        if not profile.unreadable:
            profile.unreadable.append(f"{path}:1: not a mapping")
        return profile
    packages = data["package"] if isinstance(data.get("package"), list) else []
    platforms = sorted({str(p.get("platform")) for p in packages if isinstance(p, dict)})
    chosen = platform if platform in platforms else (platforms[0] if platforms else platform)
    for item in packages:
        if not isinstance(item, dict) or item.get("platform") != chosen:
            continue
        source: Source = "pip" if item.get("manager") == "pip" else "conda"
        url = str(item.get("url", ""))
        build = ""
        if source == "conda":
            dist = _DIST_RE.match(url.rsplit("/", 1)[-1].removesuffix(".conda").removesuffix(".tar.bz2"))
            build = dist.group("build") if dist else ""
        channel = (
            url.rsplit("/", 2)[0].removeprefix("https://conda.anaconda.org/") if source == "conda" else "pypi"
        )
        name = str(item.get("name", "?"))
        profile.packages.append(
            Package(
                normalise(name) if source == "pip" else name.lower(),
                str(item.get("version", "")),
                build,
                channel,
                source,
            )
        )
    metadata = data["metadata"] if isinstance(data.get("metadata"), dict) else {}
    channels = metadata["channels"] if isinstance(metadata.get("channels"), list) else []
    profile.channels = [str(c.get("url", c)) if isinstance(c, dict) else str(c) for c in channels]
    return profile


def _line_of(lines: list[str], needle: str) -> int:
    for number, line in enumerate(lines, 1):
        if needle in line:
            return number
    return 0


def _env_name(path: Path) -> str:
    # The file, not the `name:` inside: exports are mostly called `base`, `test1` or a path.
    return path.name.rsplit(".", 1)[0]


def read_file(path: Path) -> EnvProfile:
    """Profile an exported environment file, whatever its format (sniffed from the content)."""
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    if "@EXPLICIT" in text or re.search(r"^https?://\S+\.(conda|tar\.bz2)", text, re.M):
        return parse_explicit(path, text)
    if re.search(r"^package:\s*$", text, re.M) and "manager:" in text:
        return parse_conda_lock(path, text)
    return parse_env_yaml(path, text)


def unique_prefixes(roots: Iterable[Path] = (), prefixes: Iterable[Path] = ()) -> list[Path]:
    """The prefixes found under `roots` and those given, each real directory once (first path kept)."""
    out = []
    seen: set[str] = set()
    for prefix in [*(p for r in roots for p in find_prefixes(r)), *prefixes]:
        key = os.path.realpath(prefix)
        if key not in seen:
            seen.add(key)
            out.append(Path(prefix))
    return out


def inventory(
    roots: Iterable[Path] = (), prefixes: Iterable[Path] = (), files: Iterable[Path] = ()
) -> list[EnvProfile]:
    """Every environment under `roots` (prefixes found by their conda-meta), plus the given
    prefixes and exported files."""
    out = [scan_prefix(prefix) for prefix in unique_prefixes(roots, prefixes)]
    out += [read_file(f) for f in files]
    counts: dict[str, int] = {}
    for env in out:  # names must be unique: proposals and reports key on them
        counts[env.name] = counts.get(env.name, 0) + 1
        if counts[env.name] > 1:
            env.name = f"{env.name}#{counts[env.name]}"
    return out
