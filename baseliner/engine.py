"""py-rattler, the conda engine, behind one boundary: no other module imports `rattler`.

What it offers, in baseliner's terms:

* `solve` — specs for one platform against channels (strict priority), with virtual packages,
  pinned records (must stay) and locked ones (preferred), through one HTTP client with a timeout;
* `install` — link records into a prefix from a package cache (extracting what is missing);
* `index` and `extract` — a local channel's repodata, and one package archive's files;
* `LockWriter` / `read_lock_file` — py-rattler's lock format (the pixi lock), written and read;
* `check_match_spec`, `spec_name`, `spec_matches`, `topological`, `prefix_records`, `copy_record`.

Whatever py-rattler raises becomes an `EngineError` carrying its text: callers catch that one
class and say what failed in their own words (a LockError naming the baseline, an EnvError naming
the prefix) instead of catching every exception. Records (`RepoDataRecord`) pass through as they
are: they are the values the rest of the code reads (name, version, build, url, hashes).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import time
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rattler import GenericVirtualPackage, LockFile, LockPlatform, PrefixRecord, RepoDataRecord

__all__ = ["EngineError", "LockWriter", "PrefixRecord", "RepoDataRecord"]

# Seconds one request to a channel may take (BASELINER_CHANNEL_TIMEOUT overrides): a large
# repodata file over a slow link fits; a host that accepts and never answers does not hang a lock.
CHANNEL_TIMEOUT = 300

# py-rattler finishes a call on a thread of its own runtime, which still drops its references to
# Python objects (taking the GIL) after asyncio has the result. A process that exits in that moment
# aborts ("PyGILState_Release: thread state ... must be current when releasing", the known
# PyO3/pyo3-async-runtimes#40): seen here once in `make demo` and in 2 of 90 runs of a one-line
# script whose last call was `index`. A process that called py-rattler sleeps once at exit,
# before finalizing (atexit): that releases the GIL, so the thread finishes while Python is whole.
SETTLE_SECONDS = 0.02

T = TypeVar("T")


class EngineError(Exception):
    """py-rattler failed; `text` is what it said (callers wrap it into a BaselinerError)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@functools.cache
def _settle_at_exit() -> None:
    atexit.register(time.sleep, SETTLE_SECONDS)


def _run(call: Coroutine[Any, Any, T]) -> T:
    """Run one py-rattler coroutine to its end (its runtime's thread is let go at exit)."""
    _settle_at_exit()
    return asyncio.run(call)


@contextmanager
def _engine() -> Iterator[None]:
    try:
        yield
    except EngineError:
        raise
    except Exception as exc:  # py-rattler raises its own exception types, and plain ones
        raise EngineError(str(exc).strip()) from exc


def _virtual(entries: Sequence[str]) -> list[GenericVirtualPackage]:
    from rattler import BuildString, GenericVirtualPackage, PackageName, Version

    out: list[GenericVirtualPackage] = []
    for entry in entries:
        name, version, build = [*entry.split("="), "0", "0"][:3]
        out.append(GenericVirtualPackage(PackageName(name), Version(version), BuildString(build)))
    return out


def solve(
    specs: Sequence[str],
    sources: Sequence[str],
    platform: str,
    cache: Path,
    virtual: Sequence[str],
    pinned: Sequence[RepoDataRecord] = (),
    locked: Sequence[RepoDataRecord] = (),
) -> list[RepoDataRecord]:
    """Solve `specs` for `platform` (+ noarch) from the channel URLs `sources`, in priority order."""
    from rattler import Channel, ChannelPriority, Gateway
    from rattler import solve as rattler_solve
    from rattler.networking import AuthenticationMiddleware, Client

    timeout = int(os.environ.get("BASELINER_CHANNEL_TIMEOUT") or CHANNEL_TIMEOUT)
    with _engine():
        client = Client([AuthenticationMiddleware()], timeout=timeout)
        gateway = Gateway(cache_dir=cache / "repodata", client=client)

        async def run() -> list[RepoDataRecord]:
            return list(
                await rattler_solve(
                    sources=[Channel(s) for s in sources],
                    specs=list(specs),
                    gateway=gateway,
                    platforms=[platform, "noarch"],  # type: ignore[list-item]
                    virtual_packages=_virtual(virtual),
                    channel_priority=ChannelPriority.Strict,
                    pinned_packages=list(pinned) or None,
                    locked_packages=list(locked) or None,
                )
            )

        return _run(run())


def install(
    records: Sequence[RepoDataRecord],
    prefix: Path | str,
    cache: Path,
    alternative_prefix: Path | None = None,
    link_scripts: bool = True,
) -> None:
    """Link `records` into `prefix` from the package cache `cache`; with `alternative_prefix`, files
    are written at `prefix` but their prefix placeholders name `alternative_prefix`."""
    from rattler import install as rattler_install
    from rattler.networking import AuthenticationMiddleware, Client

    kwargs: dict[str, Any] = {"alternative_target_prefix": alternative_prefix} if alternative_prefix else {}
    with _engine():
        _run(
            rattler_install(
                list(records),
                target_prefix=prefix,
                cache_dir=cache,
                installed_packages=[],
                show_progress=False,
                execute_link_scripts=link_scripts,
                # The default client sends no credentials: a mirror behind auth answers 401.
                client=Client([AuthenticationMiddleware()]),
                **kwargs,
            )
        )


def index(channel_dir: Path) -> None:
    """(Re)write repodata.json for every subdir of a local channel."""
    from rattler.index import index_fs

    with _engine():
        _run(index_fs(channel_dir, write_zst=False, write_shards=False, force=True))


def extract(archive: Path, dest: Path) -> None:
    """Extract one package archive (.conda or .tar.bz2) into `dest`."""
    from rattler.package_streaming import extract as rattler_extract

    with _engine():
        rattler_extract(archive, dest)


def check_match_spec(text: str) -> str | None:
    """Why `text` is not a valid match spec, or None when it is."""
    from rattler import MatchSpec

    try:
        MatchSpec(text)
    except Exception as exc:  # InvalidMatchSpecError and friends
        return str(exc)
    return None


def spec_name(text: str) -> str:
    """The normalised package name a match spec asks for."""
    from rattler import MatchSpec

    with _engine():
        return str(MatchSpec(text).name.normalized)


def spec_matches(text: str, record: RepoDataRecord) -> bool:
    from rattler import MatchSpec

    with _engine():
        return bool(MatchSpec(text).matches(record))


def topological(records: Sequence[Any]) -> list[Any]:
    """The records dependencies first (conda's order for @EXPLICIT files and installs)."""
    from rattler import PackageRecord

    with _engine():
        return list(PackageRecord.sort_topologically(list(records)))


def prefix_records(prefix: Path) -> list[PrefixRecord]:
    """The conda-meta records of an environment, as py-rattler reads them."""
    from rattler import PrefixRecord

    with _engine():
        return [PrefixRecord.from_path(p) for p in sorted((prefix / "conda-meta").glob("*.json"))]


def copy_record(record: RepoDataRecord) -> RepoDataRecord:
    """An independent copy (changing its url leaves the original alone)."""
    from rattler import RepoDataRecord

    return RepoDataRecord._from_py_record(record._record)  # py-rattler has no public copy


class LockWriter:
    """A py-rattler lock file being assembled: one environment, platforms with virtual packages."""

    def __init__(self, env: str, virtual: Mapping[str, Sequence[str]]) -> None:
        from rattler import LockFile, LockPlatform

        self.env = env
        self._platforms: dict[str, LockPlatform] = {
            p: LockPlatform(p, virtual_packages=list(v)) if v else LockPlatform(p) for p, v in virtual.items()
        }
        self._lock: LockFile = LockFile(list(self._platforms.values()))

    def set_channels(self, urls: Sequence[str]) -> None:
        from rattler import LockChannel

        self._lock.set_channels(self.env, [LockChannel(u.rstrip("/") + "/") for u in urls])

    def add(self, platform: str, record: RepoDataRecord) -> None:
        with _engine():
            self._lock.add_conda_package(self.env, self._platforms[platform], record)

    def to_bytes(self, near: Path) -> bytes:
        """The bytes py-rattler writes (it writes files only: a temp file next to `near`)."""
        tmp = near.with_name(f".{near.name}.rattler-{os.getpid()}")
        try:
            with _engine():
                self._lock.to_path(tmp)
            return tmp.read_bytes()
        finally:
            tmp.unlink(missing_ok=True)


def read_lock_file(path: Path, env: str) -> tuple[list[str], dict[str, list[RepoDataRecord]], list[str]]:
    """A lock file's channels (canonical URLs), conda records per platform and platform names.
    A missing environment is an EngineError."""
    from rattler import LockFile

    with _engine():
        lock = LockFile.from_path(path)
        found = lock.environment(env)
        if found is None:
            raise EngineError(f"no environment {env!r}")
        records = {p: list(r) for p, r in found.conda_repodata_records().items()}
        return [str(c).rstrip("/") for c in found.channels()], records, [p.name for p in lock.platforms()]
