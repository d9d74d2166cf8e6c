"""Channel credentials never reach rendered files, locks, manifests, tarballs, logs or errors."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from baseliner.config import Project
from baseliner.errors import LockError, redact

from ..conftest import MakeProject, spec
from ..support.serving import serve_directory

SECRET = "s3cret-TOKEN-9f2c"


def test_redact_masks_userinfo_and_conda_tokens() -> None:
    assert (
        redact(f"https://alice:{SECRET}@mirror.example/conda-forge")
        == "https://***@mirror.example/conda-forge"
    )
    assert (
        redact(f"https://conda.example/t/{SECRET}/channel/linux-64")
        == "https://conda.example/t/***/channel/linux-64"
    )
    assert SECRET not in LockError(f"fetch http://u:{SECRET}@h/x failed", details=[f"/t/{SECRET}/"]).render()


def _grep(root: Path) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and SECRET.encode() in path.read_bytes():
            hits.append(str(path))
    return hits


@pytest.fixture
def auth_channel(channel_dir: Path) -> Iterator[str]:
    """The fixture channel behind HTTP Basic auth (alice / SECRET): 401 without them."""
    with serve_directory(channel_dir, credentials=("alice", SECRET)) as url:
        yield url


def test_the_channel_server_refuses_requests_without_the_credentials(auth_channel: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{auth_channel}/noarch/repodata.json", timeout=10)
    assert info.value.code == 401


def test_a_planted_channel_secret_appears_nowhere(
    make_project: MakeProject, auth_channel: str, tmp_path: Path
) -> None:
    authed = auth_channel.replace("http://", f"http://alice:{SECRET}@")
    project: Project = make_project(
        {"sec": spec("sec", conda=["python 3.*", "hello-noarch"])}, channel_url=authed
    )
    env = {**os.environ, "BASELINER_ROOT": str(project.root)}
    baseliner = str(Path(sys.executable).with_name("baseliner"))
    outputs = []
    for args in (
        ["lock", "--name", "sec"],
        ["render", "--name", "sec"],
        ["build-baseline", "sec", "--no-image"],
    ):
        proc = subprocess.run([baseliner, *args], env=env, cwd=project.root, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        outputs += [proc.stdout, proc.stderr]
    # a failing solve against the same authenticated mirror: the error names the mirror, not the secret
    (project.root / "baselines" / "bad.yaml").write_text(yaml.safe_dump(spec("bad", conda=["no-such-pkg"])))
    proc = subprocess.run(
        [baseliner, "lock", "--name", "bad"], env=env, cwd=project.root, capture_output=True, text=True
    )
    assert proc.returncode == LockError.exit_code and "no-such-pkg" in proc.stderr
    outputs += [proc.stdout, proc.stderr]
    assert not [o for o in outputs if SECRET in o]
    leaked = [
        p for p in _grep(project.root) if not p.endswith("baseliner.yaml")
    ]  # the config is where it lives
    assert leaked == [], leaked
