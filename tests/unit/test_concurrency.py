"""Scratch space that the next run heals: a dead run's leftovers go, a live run's stay."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from baseliner.atomic import write_atomic
from baseliner.concurrency import OWNER_FILE, SCRATCH_PREFIX, leftovers, scratch, scratch_file, sweep

HOLD = (
    "import os, sys; from pathlib import Path; from baseliner.concurrency import scratch\n"
    "with scratch(Path(sys.argv[1]), 'test') as tmp:\n"
    "    (tmp / 'part').write_bytes(b'x' * 4096); print(tmp, flush=True); sys.stdin.read(1)\n"
)


def _holder(parent: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(parent)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_a_killed_runs_scratch_is_swept_and_a_live_runs_is_not(tmp_path: Path) -> None:
    live, live_dir = _holder(tmp_path)
    dead, dead_dir = _holder(tmp_path)
    dead.kill()
    dead.wait()
    assert live_dir.name.startswith(SCRATCH_PREFIX + "test.") and (live_dir / OWNER_FILE).is_file()
    assert leftovers(tmp_path) == [dead_dir]
    assert sweep(tmp_path) == [dead_dir]
    assert live_dir.is_dir() and not dead_dir.exists()
    live.communicate("\n", timeout=30)
    assert live.returncode == 0 and not live_dir.exists()  # its own exit removes it


def test_a_scratch_block_removes_its_directory_on_error_and_keeps_what_it_moved_out(tmp_path: Path) -> None:
    try:
        with scratch(tmp_path, "test") as tmp:
            (tmp / "result").write_text("done")
            (tmp / "result").rename(tmp_path / "result")
            raise RuntimeError("stop")
    except RuntimeError:
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]


def test_a_killed_write_of_this_host_is_a_leftover_at_once_and_a_live_ones_is_not(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    mine = scratch_file(target)
    mine.write_text("half")  # this process: alive
    dead = Path(str(mine).replace(f".{os.getpid()}.", ".999999999."))
    dead.write_text("half")
    other_host = tmp_path / f"{SCRATCH_PREFIX}write.elsewhere.1.ab.index.json"
    other_host.write_text("half")
    assert leftovers(tmp_path) == [dead]  # another host's writer may be alive: only once it is old
    old = time.time() - 3600
    os.utime(other_host, (old, old))
    assert sorted(leftovers(tmp_path)) == sorted([dead, other_host])
    write_atomic(target, "{}")
    assert target.read_text() == "{}" and mine.exists()  # writing never takes another writer's name


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_whether_a_scratch_names_writer_runs_at_the_shortest_name() -> None:
    from baseliner.concurrency import _host, _writer_alive

    host = _host()
    assert _writer_alive(f"{SCRATCH_PREFIX}x.{host}.{_dead_pid()}") is False  # three parts: enough
    assert _writer_alive(f"{SCRATCH_PREFIX}x.{host}.{os.getpid()}") is True
    assert _writer_alive(f"{SCRATCH_PREFIX}x.{host}") is None  # no pid: cannot tell
    assert _writer_alive(f"{SCRATCH_PREFIX}x.other-host.{os.getpid()}") is None  # another host's


def test_a_writer_this_user_may_not_signal_still_runs() -> None:
    """os.kill(pid, 0) on another user's live process answers EPERM: the process runs."""
    from baseliner.concurrency import _host, _writer_alive

    assert _writer_alive(f"{SCRATCH_PREFIX}x.{_host()}.{os.getpid()}") is True  # (and mutmut sees the call)
    if os.geteuid() != 0:
        assert _writer_alive(f"{SCRATCH_PREFIX}x.{_host()}.1") is True
        return
    child = os.fork()
    if child == 0:  # drop to an unprivileged user, then ask about init (pid 1, root's)
        os.setgid(65534)
        os.setuid(65534)
        os._exit(0 if _writer_alive(f"{SCRATCH_PREFIX}x.{_host()}.1") is True else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_directory_without_an_owner_file_has_no_dead_owner(tmp_path: Path) -> None:
    from baseliner.concurrency import owner_is_dead

    assert owner_is_dead(tmp_path) is False  # no owner file: not ours to judge
    (tmp_path / "a-file").write_text("x")
    assert owner_is_dead(tmp_path / "a-file") is False  # not even a directory
    (tmp_path / OWNER_FILE).write_text("host 1\n")
    assert owner_is_dead(tmp_path) is True  # an owner file nobody holds locked
