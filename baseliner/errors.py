"""One exception hierarchy for baseliner.

Every error a user can cause is a :class:`BaselinerError`. It carries what failed, where it came
from (file and line), the specifics (shown as the first few, then "+ N others"), and a hint naming
the next command. The CLI layer turns it into a one-screen message and an exit code; a traceback
is kept for bugs only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

# Credentials that may ride in a channel or registry URL: user:password@ and conda's /t/<token>/.
_USERINFO = re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+@")
_TOKEN = re.compile(r"/t/[^/\s]+/")


def redact(text: str) -> str:
    """`text` with credentials in URLs masked (so no error message or log line carries them)."""
    return _TOKEN.sub("/t/***/", _USERINFO.sub("***@", text))


SHOWN_DETAILS = 3


def first_few(items: Iterable[str], limit: int = SHOWN_DETAILS) -> list[str]:
    """The first `limit` items, then "+ N others" when there are more."""
    items = list(items)
    shown = items[:limit]
    if len(items) > limit:
        shown.append(f"+ {len(items) - limit} others")
    return shown


@dataclass(frozen=True)
class Location:
    """Where a problem came from: a file, optionally a line."""

    path: Path | str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}, line {self.line}" if self.line else str(self.path)


@dataclass
class BaselinerError(Exception):
    """Base of every error a user can cause (exit code 1 when no subclass says more)."""

    exit_code: ClassVar[int] = 1

    message: str
    where: Location | None = None
    details: Sequence[str] = field(default_factory=tuple)
    hint: str | None = None
    detail_limit: int = SHOWN_DETAILS

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        head = self.message
        if self.where is not None:
            head = f"{head} ({self.where})"
        lines = [f"error: {head}" + (":" if self.details else "")]
        lines += [f"  - {d}" for d in first_few(self.details, self.detail_limit)]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return redact("\n".join(lines))


class SpecError(BaselinerError):
    """A baseline, overlay or org-channel spec is invalid."""

    exit_code = 2


class ConfigError(BaselinerError):
    """The org config (baseliner.yaml) is invalid or lacks what a command needs."""

    exit_code = 3


class ChannelError(BaselinerError):
    """A channel could not be built, seeded, indexed, served or read."""

    exit_code = 4


class LockError(BaselinerError):
    """Solving failed, or a lock is missing, stale or malformed."""

    exit_code = 5


class EnvError(BaselinerError):
    """Installing an environment failed."""

    exit_code = 6


class LintError(BaselinerError):
    """An environment has problems that must be fixed before packing."""

    exit_code = 7


class PackError(BaselinerError):
    """Packing, unpacking or applying a tarball failed."""

    exit_code = 8


class ImageError(BaselinerError):
    """Building, tagging, pushing or smoke-testing an image failed."""

    exit_code = 9


class DockerUnavailable(ImageError):
    """No Docker Engine can be reached."""

    exit_code = 10


class StoreError(BaselinerError):
    """The artifact store is unreachable, incomplete or corrupt, or refuses a changed version."""

    exit_code = 11


class CacheError(BaselinerError):
    """The shared package cache could not be filled or is unsound."""

    exit_code = 12


class Locked(BaselinerError):
    """Another process holds a lock for longer than we may wait."""

    exit_code = 13


class RenderError(BaselinerError):
    """A template could not be rendered, or a value failed the allowlist."""

    exit_code = 14


class ArtifactError(BaselinerError):
    """A file baseliner wrote (manifest, index, marker, report) is malformed or of an unknown version."""

    exit_code = 15


class SbomError(BaselinerError):
    """The SBOM does not validate against the CycloneDX schema."""

    exit_code = 16


class ActivationError(BaselinerError):
    """An activation script failed, or exports what an image cannot carry."""

    exit_code = 17


class DiskFullError(BaselinerError):
    """The disk filled up (ENOSPC); nothing partial was kept."""

    exit_code = 18


class ConsolidateError(BaselinerError):
    """A cluster cannot be consolidated (packages missing, environments in use, a check failed);
    no environment was swapped for it."""

    exit_code = 19


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from, is an OSError with errno ENOSPC."""
    import errno

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        current = current.__cause__ or current.__context__
    return False


def error_classes() -> list[type[BaselinerError]]:
    """Every error class, base first: each has its own exit code (the README lists them)."""
    out: list[type[BaselinerError]] = [BaselinerError]
    pending = list(BaselinerError.__subclasses__())
    while pending:
        cls = pending.pop(0)
        out.append(cls)
        pending += cls.__subclasses__()
    return sorted(out, key=lambda c: c.exit_code)
