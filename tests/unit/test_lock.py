"""Locking against the fixture channel, on disk and over HTTP: determinism, staleness, formats."""

from __future__ import annotations

import pytest
import yaml

from baseliner.errors import LockError
from baseliner.lock import LockPaths, lock_baseline, lock_hash, read_lock, stale_reason

from ..conftest import MakeProject, spec


def _lock(project, name: str):  # type: ignore[no-untyped-def]
    baseline = project.repo().resolve(name)
    lock_baseline(baseline, project.mirrors(), project.build_dir, project.pip_index)
    return baseline


def test_lock_twice_gives_identical_bytes(make_project: MakeProject) -> None:
    project = make_project(
        {"ml": spec("ml", conda=["python 3.*", "prefixdemo", "hello-noarch"], pip=["tinyapp"])}
    )
    baseline = _lock(project, "ml")
    paths = LockPaths(baseline.path)
    files = [paths.lock, paths.explicit("linux-64"), paths.pip("linux-64")]
    first = {p: p.read_bytes() for p in files}
    _lock(project, "ml")
    assert {p: p.read_bytes() for p in files} == first
    assert stale_reason(baseline) is None


@pytest.mark.parametrize("over_http", [False, True])
def test_lock_records_canonical_urls_and_hashes(
    make_project: MakeProject, http_channel: str, over_http: bool
) -> None:
    project = make_project(
        {"ml": spec("ml", conda=["python 3.*", "prefixdemo", "hello-noarch"])},
        channel_url=http_channel if over_http else None,
    )
    baseline = _lock(project, "ml")
    records = read_lock(baseline, "linux-64").records
    names = sorted(str(r.name.normalized) for r in records)
    assert names == ["hello-noarch", "prefixdemo", "python"]
    for record in records:
        assert record.url.startswith("https://conda.anaconda.org/fixture/")
        assert record.sha256 is not None and record.md5 is not None
    text = LockPaths(baseline.path).lock.read_text()
    assert "127.0.0.1" not in text and "file://" not in text


def test_explicit_file_parses_back_in_dependency_order(make_project: MakeProject) -> None:
    from rattler.explicit_environment import ExplicitEnvironmentSpec

    project = make_project({"ml": spec("ml", conda=["hello-noarch", "needs-old-foo"])})
    baseline = _lock(project, "ml")
    path = LockPaths(baseline.path).explicit("linux-64")
    lines = path.read_text().splitlines()
    assert "@EXPLICIT" in lines and "# platform: linux-64" in lines
    urls = [line for line in lines if not line.startswith(("#", "@"))]
    assert all(len(u.rsplit("#", 1)[1]) == 32 for u in urls)  # URL#md5, as conda writes it
    parsed = ExplicitEnvironmentSpec.from_path(path)
    assert [e.url for e in parsed.packages] == urls
    order = [u.rsplit("/", 1)[1].split("-")[0] for u in urls]
    assert order.index("libfoo") < order.index("needs")  # dependencies first
    assert order.index("python") < order.index("hello")
    assert any("libfoo-1.0" in u for u in urls)  # needs-old-foo pins libfoo <2


def test_editing_the_spec_makes_the_lock_stale(make_project: MakeProject) -> None:
    project = make_project({"ml": spec("ml")})
    baseline = _lock(project, "ml")
    assert stale_reason(baseline) is None
    path = baseline.path
    data = yaml.safe_load(path.read_text())
    data["conda"].append("libfoo")
    path.write_text(yaml.safe_dump(data))
    edited = project.repo().resolve("ml")
    assert stale_reason(edited) == "the spec changed since it was locked"
    with pytest.raises(LockError, match="out of date"):
        read_lock(edited, "linux-64")


def test_lock_hash_covers_pip_lock(make_project: MakeProject) -> None:
    project = make_project({"ml": spec("ml", pip=["tinyapp"])})
    baseline = _lock(project, "ml")
    before = lock_hash(baseline.path)
    pip = LockPaths(baseline.path).pip("linux-64")
    text = pip.read_text()
    assert "tinyapp==0.5.0" in text and "tinyutil==1.2.0" in text and "--hash=sha256:" in text
    pip.write_text(text + "\n")
    assert lock_hash(baseline.path) != before


def test_conflicting_levels_are_named(make_project: MakeProject) -> None:
    parent = spec("parent", conda=["python 3.*", "libfoo >=2"])
    child = spec("child", conda=["needs-old-foo"], extends="parent")
    del child["channels"]
    project = make_project({"parent": parent, "child": child})
    with pytest.raises(LockError) as info:
        _lock(project, "child")
    text = info.value.render()
    assert "could not solve baseline 'child'" in text
    assert "libfoo >=2   (asked by parent)" in text
    assert "needs-old-foo   (asked by child)" in text


def test_missing_package_is_explained(make_project: MakeProject) -> None:
    project = make_project({"ml": spec("ml", conda=["python 3.*", "no-such-package"])})
    with pytest.raises(LockError) as info:
        _lock(project, "ml")
    assert "no-such-package" in info.value.render()


def test_a_lock_entry_without_a_hash_is_refused(make_project: MakeProject) -> None:
    import re

    project = make_project({"ml": spec("ml")})
    baseline = _lock(project, "ml")
    path = LockPaths(baseline.path).lock
    path.write_text(re.sub(r"^  sha256: [0-9a-f]{64}\n", "", path.read_text(), flags=re.M))
    with pytest.raises(LockError, match="has no sha256"):
        read_lock(baseline, "linux-64")


def test_a_microarch_level_package_solves_on_the_default_archspec(make_project: MakeProject) -> None:
    project = make_project({"ml": spec("ml", conda=["python 3.*", "fastkernel"])})
    baseline = _lock(project, "ml")
    by_name = {str(r.name.normalized): r for r in read_lock(baseline, "linux-64").records}
    assert str(by_name["_x86_64-microarch-level"].build) == "2_x86_64"
    assert "__archspec=1=x86_64" in LockPaths(baseline.path).lock.read_text()


def test_a_declared_archspec_overrides_the_default(make_project: MakeProject) -> None:
    level3 = ["python 3.*", "fastkernel", "_x86_64-microarch-level >=3"]
    project = make_project(
        {
            "fast": spec("fast", conda=level3, virtual_packages={"linux-64": ["__archspec=1=x86_64_v3"]}),
            "generic": spec("generic", conda=level3),
        }
    )
    fast = _lock(project, "fast")
    by_name = {str(r.name.normalized): r for r in read_lock(fast, "linux-64").records}
    assert str(by_name["_x86_64-microarch-level"].build) == "2_x86_64_v3"
    with pytest.raises(LockError, match="could not solve baseline 'generic'"):
        _lock(project, "generic")


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("http://127.0.0.1:9/org", "the connection was refused"),
        ("http://no-such-host.invalid/org", "its host name does not resolve (DNS)"),
        ("SILENT", "the request timed out"),
    ],
)
def test_an_unreachable_channel_is_named_with_its_mirror_key(
    make_project: MakeProject, monkeypatch: pytest.MonkeyPatch, url: str, cause: str
) -> None:
    import socket

    silent = socket.socket()  # accepts connections and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    if url == "SILENT":
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/org"
    monkeypatch.setenv("BASELINER_CHANNEL_TIMEOUT", "2")
    project = make_project({"ml": spec("ml")}, channel_url=url)
    with pytest.raises(LockError) as info:
        _lock(project, "ml")
    silent.close()
    text = info.value.render()
    assert f"channel 'fixture' cannot be reached at {url}: {cause}" in text
    assert "channel_mirrors: {https://conda.anaconda.org/fixture: URL-or-DIR}" in text
    assert "lack" not in text


def _lock_entries(path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Each package's block of the lock file, by package file name (the bytes a re-lock must keep)."""
    import re

    text = path.read_text()
    blocks = re.split(r"^(?=- conda: )", text[text.index("packages:") :], flags=re.M)[1:]
    return {b.split("\n", 1)[0].rsplit("/", 1)[1]: b for b in blocks}


@pytest.fixture
def moving_channel(channel_dir, tmp_path):  # type: ignore[no-untyped-def]
    """The fixture channel before libfoo 2.0 was released; `release()` publishes it."""
    import shutil

    from baseliner.channels import index_channel

    channel = tmp_path / "moving-channel"
    shutil.copytree(channel_dir, channel)
    held = tmp_path / "held"
    held.mkdir()
    for path in channel.glob("*/libfoo-2.0-*"):
        path.rename(held / path.name)
    index_channel(channel)

    def release() -> None:
        for path in held.iterdir():
            path.rename(next(channel.glob("*/libfoo-1.0-*")).parent / path.name)
        index_channel(channel)

    return channel, release


def test_adding_a_package_leaves_every_unrelated_record_byte_identical(make_project, moving_channel) -> None:  # type: ignore[no-untyped-def]
    channel, release = moving_channel
    project = make_project(
        {"ml": spec("ml", conda=["python 3.*", "libfoo", "hello-noarch"])}, channel_url=channel.as_uri()
    )
    baseline = _lock(project, "ml")
    before = _lock_entries(LockPaths(baseline.path).lock)
    assert any(name.startswith("libfoo-1.0-") for name in before)
    release()  # the channel moves on: a solve from scratch would now pick libfoo 2.0
    path = project.baselines_dir / "ml.yaml"
    data = yaml.safe_load(path.read_text())
    data["conda"].append("prefixdemo")
    path.write_text(yaml.safe_dump(data))
    baseline = _lock(project, "ml")
    after = _lock_entries(LockPaths(baseline.path).lock)
    assert {k: v for k, v in after.items() if k in before} == before
    assert sorted(set(after) - set(before)) == [n for n in after if n.startswith("prefixdemo-")]

    # --update moves only the package named; --force re-solves everything from scratch.
    lock_baseline(baseline, project.mirrors(), project.build_dir, update=["libfoo"])
    updated = _lock_entries(LockPaths(baseline.path).lock)
    assert sorted(set(updated) ^ set(after)) == sorted(
        [n for n in after if n.startswith("libfoo-1.0-")]
        + [n for n in updated if n.startswith("libfoo-2.0-")]
    )
    with pytest.raises(LockError, match="not in the lock"):
        lock_baseline(baseline, project.mirrors(), project.build_dir, update=["numpy"])


def test_force_solves_from_scratch(make_project, moving_channel) -> None:  # type: ignore[no-untyped-def]
    channel, release = moving_channel
    project = make_project({"ml": spec("ml", conda=["python 3.*", "libfoo"])}, channel_url=channel.as_uri())
    baseline = _lock(project, "ml")
    release()
    lock_baseline(baseline, project.mirrors(), project.build_dir)
    assert any(n.startswith("libfoo-1.0-") for n in _lock_entries(LockPaths(baseline.path).lock))
    lock_baseline(baseline, project.mirrors(), project.build_dir, fresh=True)
    assert any(n.startswith("libfoo-2.0-") for n in _lock_entries(LockPaths(baseline.path).lock))
