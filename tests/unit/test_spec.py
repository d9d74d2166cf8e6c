"""Spec loading, rejection of malformed and hostile specs, and `extends:` resolution."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from baseliner.errors import SpecError
from baseliner.spec import BaselineRepo

from ..conftest import DATA

BAD = DATA / "bad-specs"
CASES = sorted(p.stem for p in BAD.glob("*.yaml") if p.read_text().startswith("# expect:"))


def _expectation(path: Path) -> tuple[str, int | None, str | None]:
    """What a hostile fixture's header says its error must contain: text, line, key."""
    text = path.read_text()
    expect = re.search(r"^# expect: (.*)$", text, re.M).group(1)  # type: ignore[union-attr]
    line = re.search(r"^# expect-line: (\S+)$", text, re.M).group(1)  # type: ignore[union-attr]
    key = re.search(r"^# expect-key: (\S+)$", text, re.M).group(1)  # type: ignore[union-attr]
    return expect, None if line == "none" else int(line), None if key == "none" else key


def test_there_are_at_least_30_hostile_specs() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", CASES)
def test_bad_spec_is_rejected_with_file_line_and_key(name: str, tmp_path: Path) -> None:
    shutil.copytree(BAD, tmp_path / "baselines")
    expect, line, key = _expectation(BAD / f"{name}.yaml")
    with pytest.raises(SpecError) as info:
        BaselineRepo(tmp_path / "baselines").resolve(name)
    message = info.value.render()
    assert expect in message
    assert message.startswith("error: ")
    assert "Traceback" not in message
    assert f"{name}.yaml" in message
    if line is not None:
        assert f"line {line}" in message
    if key is not None:
        assert key in message, (key, message)
    assert "\nhint: " in message  # every refusal says what to do
    assert len(message.splitlines()) <= 12  # one screen
    # Nothing of the hostile value's control characters reaches the terminal raw.
    assert not any(ord(ch) < 0x20 and ch != "\n" for ch in message)


def test_extends_merges_channels_pins_and_image(tmp_path: Path) -> None:
    d = tmp_path / "baselines"
    d.mkdir()
    (d / "root.yaml").write_text(
        "schema_version: 1\nname: root\nversion: '1'\nchannels: [a, b]\nplatforms: [linux-64, osx-arm64]\n"
        "conda: ['python 3.11.*', 'numpy >=1.24']\npip: ['requests']\n"
        "virtual_packages: {linux-64: ['__glibc=2.17', '__cuda=11.8']}\n"
        "image: {user: alice, env: {A: '1'}, labels: {org.x: one}}\npack: {compress_level: 9}\n"
    )
    (d / "child.yaml").write_text(
        "schema_version: 1\nname: child\nversion: '2'\nextends: root\nchannels: [c, a]\n"
        "platforms: [linux-64]\nconda: ['numpy <2', 'pandas']\n"
        "virtual_packages: {linux-64: ['__cuda=12.4']}\n"
        "image: {uid: 2000, env: {B: '2'}}\npack: {format: tar.zst}\n"
    )
    child = BaselineRepo(d).resolve("child")
    assert child.chain == ("root", "child")
    assert child.channels == ("a", "b", "c")
    assert child.platforms == ("linux-64",)
    assert [(r.spec, r.origin) for r in child.conda] == [
        ("python 3.11.*", "root"),
        ("numpy >=1.24", "root"),
        ("numpy <2", "child"),
        ("pandas", "child"),
    ]
    assert child.pip_specs == ["requests"]
    assert sorted(child.virtual_packages["linux-64"]) == ["__cuda=12.4", "__glibc=2.17"]
    assert (child.image.user, child.image.uid) == ("alice", 2000)
    assert child.image.env == {"A": "1", "B": "2"}
    assert child.image.labels == {"org.x": "one"}
    assert (child.pack.format, child.pack.compress_level) == ("tar.zst", 9)
    assert child.version == "2"


def test_spec_hash_changes_with_content_not_with_comments(tmp_path: Path) -> None:
    d = tmp_path / "baselines"
    d.mkdir()
    path = d / "x.yaml"
    path.write_text("schema_version: 1\nname: x\nversion: '1'\nchannels: [a]\nconda: [python]\n")
    first = BaselineRepo(d).resolve("x").spec_hash
    path.write_text("# a comment\nschema_version: 1\nname: x\nversion: '1'\nchannels: [a]\nconda: [python]\n")
    assert BaselineRepo(d).resolve("x").spec_hash == first
    path.write_text("schema_version: 1\nname: x\nversion: '1'\nchannels: [a]\nconda: [python, numpy]\n")
    assert BaselineRepo(d).resolve("x").spec_hash != first


def test_resolve_all_orders_parents_first(tmp_path: Path) -> None:
    d = tmp_path / "baselines"
    d.mkdir()
    (d / "a-child.yaml").write_text("schema_version: 1\nname: a-child\nversion: '1'\nextends: z-root\n")
    (d / "z-root.yaml").write_text("schema_version: 1\nname: z-root\nversion: '1'\nchannels: [c]\n")
    assert [b.name for b in BaselineRepo(d).resolve_all()] == ["z-root", "a-child"]


def test_shipped_baselines_validate() -> None:
    repo = BaselineRepo(Path(__file__).resolve().parents[2] / "baselines")
    names = [b.name for b in repo.resolve_all()]
    assert {"base-ai", "base-nlp", "demo"} <= set(names)
    nlp = repo.resolve("base-nlp")
    assert nlp.chain == ("base-ai", "base-nlp")
    assert "python 3.10.*" in nlp.conda_specs


@pytest.mark.parametrize(
    ("filename", "text", "key", "lines"),
    [
        (
            "overlay.yaml",
            "schema_version: 1\nname: proj\nextends: demo@1\nconda:\n  - regex\npip: [ftfy]\nconda:\n  - tqdm\n",
            "conda",
            (4, 7),
        ),
        (
            "baseliner.yaml",
            "schema_version: 1\nchannel_mirrors:\n  https://a.example/x: build/x\n"
            "  https://a.example/x: build/y\n",
            "channel_mirrors.https://a.example/x",
            (3, 4),
        ),
    ],
)
def test_a_key_given_twice_is_refused_in_overlays_and_the_org_config(
    tmp_path: Path, filename: str, text: str, key: str, lines: tuple[int, int]
) -> None:
    from baseliner.config import Project
    from baseliner.overlay import load_overlay

    (tmp_path / filename).write_text(text)
    with pytest.raises(SpecError) as info:
        if filename == "overlay.yaml":
            load_overlay(tmp_path / filename)
        else:
            Project.load(tmp_path)
    message = info.value.render()
    assert f"{filename} gives the key {key!r} twice (lines {lines[0]} and {lines[1]})" in message
    assert f"{filename}, line {lines[1]}" in message
