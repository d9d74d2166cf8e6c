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
    """Base of every error a user can cause."""

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
    """A baseline, overlay or org config file is invalid."""


class ConfigError(BaselinerError):
    """The org config (baseliner.yaml) is invalid."""


class ChannelError(BaselinerError):
    """A channel could not be seeded, indexed, served or read."""


class LockError(BaselinerError):
    """Solving failed, or a lock is missing, stale or malformed."""


class RenderError(BaselinerError):
    """A template could not be rendered, or a value failed the allowlist."""


class EnvError(BaselinerError):
    """Installing an environment failed."""


class LintError(BaselinerError):
    """An environment has problems that must be fixed before packing."""


class PackError(BaselinerError):
    """Packing or unpacking a tarball failed."""


class ImageError(BaselinerError):
    """Building, tagging, pushing or smoke-testing an image failed."""


class DockerUnavailable(ImageError):
    """No Docker Engine can be reached."""
