"""File locks between concurrent runs, and the scratch space of long operations that the next run
heals (fcntl.flock: released by the kernel when a holder dies).

What is locked, and for how long:

* `build/locks/NAME-VERSION-PLATFORM.lock` — one `build-baseline` of that baseline, for the whole
  build (lock, env, pack, render, image). A second build of the same baseline waits, then finds the
  first one's artifacts fresh and does nothing; past the timeout it stops with "another build
  holds …".
* `build/locks/overlay-NAME-PLATFORM.lock` — one `build-overlay` of that overlay, the same way.
* `STORE/.index.lock` — publishing one version into the store, while its directory is renamed
  into place and the index rewritten (see `store.py`).
* The package cache and uv's cache lock themselves (py-rattler per package, uv per entry), so
  builds of different baselines share them safely.

Scratch space (`scratch`): every long operation (unpack, cache fill and export, pack, build,
publish, apply a delta) assembles its output in a directory next to the destination named
`.baseliner-tmp.PURPOSE.HOST.PID.RANDOM`, holding an owner file that the operation keeps
flock'ed while it runs, then renames the result into place. A run killed at any moment (SIGKILL,
OOM, eviction) leaves at most that directory; `sweep(parent)`, which every operation runs on the
places it writes, removes each one whose owner file nobody holds (the kernel dropped the dead
owner's lock), and never one of a live run. The same owner file inside a destination marks it
as not finished yet (an unpacked env whose prefixes are still being rewritten).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import Locked


@contextlib.contextmanager
def hold(
    path: Path, what: str, timeout: float = 1800.0, report: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the exclusive lock `path` for the block, waiting up to `timeout` s and saying who holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Locked(
                        f"another build holds {what}",
                        details=[f"lock file {path}", f"waited {timeout:.0f} s"],
                        hint="wait for it to finish, or stop it; a killed holder releases the lock at once",
                    ) from None
                if report and not told:
                    report(f"waiting: another build holds {what}")
                    told = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the flock


SCRATCH_PREFIX = ".baseliner-tmp."
OWNER_FILE = ".baseliner-owner"
# An entry of ours without an owner file (a file being written, or a directory whose creator died
# between mkdir and locking) of another host: only past this age is it a leftover. On this host,
# the pid in its name says whether its writer still runs.
_UNOWNED_GRACE = 60.0


def is_scratch(name: str) -> bool:
    """Whether a directory entry is baseliner scratch space (ours, possibly a leftover)."""
    return name.startswith(SCRATCH_PREFIX)


@functools.cache
def _host() -> str:
    return "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in socket.gethostname())[:40] or "host"


def scratch_file(target: Path) -> Path:
    """A temporary name next to `target` for writing it whole and renaming it over: recognisable
    as ours, and as this process's (host and pid in the name)."""
    return target.with_name(
        f"{SCRATCH_PREFIX}write.{_host()}.{os.getpid()}.{secrets.token_hex(4)}.{target.name}"
    )


def _writer_alive(name: str) -> bool | None:
    """For a scratch name of this host: whether the process in it still runs (None: another host's)."""
    parts = name[len(SCRATCH_PREFIX) :].split(".")
    if len(parts) < 3 or parts[1] != _host() or not parts[2].isdigit():
        return None
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def scratch(parent: Path, purpose: str) -> Iterator[Path]:
    """A new scratch directory in `parent` (same filesystem as the destination, so the result can
    be renamed into place), owned by this process until the block ends, then removed. Whatever the
    block renamed out of it stays. Leftovers of dead runs in `parent` are swept first."""
    parent.mkdir(parents=True, exist_ok=True)
    sweep(parent)
    path = parent / f"{SCRATCH_PREFIX}{purpose}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}"
    path.mkdir()
    fd = claim(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def claim(directory: Path) -> int:
    """Create and lock the owner file of `directory`; the returned fd holds it (close to release)."""
    # Locked under a private name first, so the owner file never appears unlocked to a sweeper.
    tmp = directory / f"{OWNER_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{_host()} {os.getpid()}\n".encode())
    tmp.rename(directory / OWNER_FILE)
    return fd


def release(directory: Path, fd: int) -> None:
    """Mark `directory` finished: remove its owner file, then drop the lock."""
    with contextlib.suppress(FileNotFoundError):
        (directory / OWNER_FILE).unlink()
    os.close(fd)


def owner_is_dead(directory: Path) -> bool:
    """Whether `directory` has an owner file that no live process holds."""
    try:
        fd = os.open(directory / OWNER_FILE, os.O_RDWR)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    finally:
        os.close(fd)  # closing drops the lock again (if we took it)
    return True


def leftovers(parent: Path) -> list[Path]:
    """Scratch entries in `parent` that no live run owns."""
    if not parent.is_dir():
        return []
    found = []
    now = time.time()
    for entry in sorted(parent.iterdir()):
        if not is_scratch(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink() and (entry / OWNER_FILE).exists():
            if owner_is_dead(entry):
                found.append(entry)
            continue
        alive = _writer_alive(entry.name)
        if alive is False or (alive is None and now - entry.lstat().st_mtime > _UNOWNED_GRACE):
            found.append(entry)
    return found


def sweep(parent: Path) -> list[Path]:
    """Remove the leftovers of dead runs in `parent`; returns what was removed."""
    removed = []
    for entry in leftovers(parent):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        if not entry.exists():
            removed.append(entry)
    return removed
