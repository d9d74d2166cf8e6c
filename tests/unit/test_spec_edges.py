"""The spec's promises at their edges: a spec hash that never moves between baseliner versions
(every committed lock names it), `extends:` adding pip requirements with their origin, and the
exact words of the errors a user meets (empty file, broken YAML, unknown names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from baseliner.errors import SpecError
from baseliner.spec import BaselineRepo

ROOT = """\
schema_version: 1
name: root
version: "1.0"
channels: [https://conda.example.org/org]
platforms: [linux-64, linux-aarch64]
conda: ["python 3.11.*", numpy]
pip: ["rich==13.7.1"]
virtual_packages:
  linux-64: ["__glibc=2.28"]
"""
CHILD = """\
schema_version: 1
name: child
version: "2.0"
extends: root
conda: [pandas]
pip: ["Requests==2.31.0"]
"""


def _repo(tmp_path: Path, **files: str) -> BaselineRepo:
    (tmp_path / "baselines").mkdir(parents=True)
    for name, text in files.items():
        (tmp_path / "baselines" / f"{name}.yaml").write_text(text)
    return BaselineRepo(tmp_path / "baselines")


def test_the_spec_hash_is_the_one_every_earlier_release_computed(tmp_path: Path) -> None:
    # Pinned: a change to the canonical form (a key renamed, a field dropped, a default that moved)
    # would make every committed lock stale at once. Change these only with a new SCHEMA_VERSION.
    repo = _repo(tmp_path, root=ROOT, child=CHILD)
    assert (
        repo.resolve("root").spec_hash == "33f1e70cd77a8b55c1576d814aa97259fd835f57dd0358b482bea09d1328108e"
    )
    assert (
        repo.resolve("child").spec_hash == "8a12fe2fb0421101e6eb5879f392b9127776a51b5f2e2e065bc9a3507498d308"
    )


def test_the_overlay_spec_hash_is_the_one_earlier_releases_computed() -> None:
    # Pinned like the baseline's: every committed overlay lock names it. The pack section is
    # hashed as schema 1 wrote it, so the defaults that changed since (level, threads) stale no lock.
    from baseliner.overlay import Base, Overlay, OverlaySpec

    base = Base("demo", "2026.12", "0" * 64, Path("x.lock"), {}, None, None)
    unset = OverlaySpec(
        schema_version=1, name="proj", extends="demo@2026.12", conda=["tabulate"], pip=["ftfy==6.2.0"]
    )
    explicit = OverlaySpec(
        schema_version=1, name="proj", extends="demo@2026.12", pack={"format": "tar.zst", "threads": -1}
    )
    assert Overlay(unset, Path("overlay.yaml")).spec_hash(base) == (
        "b1dbe9dde8647656844c634215dd80b0e694bdb47922efe0329ec0dc18c62104"
    )
    assert Overlay(explicit, Path("overlay.yaml")).spec_hash(base) == (
        "6a15224d21e25e086964f7e3faeb52c09480fb04293ee79ca2a3a90ae9fff6fa"
    )


def test_a_child_adds_pip_requirements_that_name_it_as_their_origin(tmp_path: Path) -> None:
    child = _repo(tmp_path, root=ROOT, child=CHILD).resolve("child")
    assert [(r.spec, r.origin) for r in child.pip] == [
        ("rich==13.7.1", "root"),
        ("Requests==2.31.0", "child"),
    ]
    assert [(r.spec, r.origin) for r in child.conda] == [
        ("python 3.11.*", "root"),
        ("numpy", "root"),
        ("pandas", "child"),
    ]
    assert child.chain == ("root", "child")


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "it is empty"),
        ("# only a comment\n", "it is empty"),
        ("- a\n- list\n", "it holds a list"),
    ],
)
def test_a_spec_that_is_not_a_mapping_says_what_it_holds(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        _repo(tmp_path, root=text).resolve("root")
    assert message in caught.value.render()
    assert caught.value.where is not None and Path(caught.value.where.path).name == "root.yaml"


def test_duplicate_keys_and_broken_yaml_name_the_file_line_and_fix(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path, dup=ROOT.replace("name: root", "name: dup") + 'version: "2.0"\n', broken="a: [1, 2\n"
    )
    with pytest.raises(SpecError) as dup:
        repo.resolve("dup")
    assert dup.value.hint == "merge the two into one key"
    assert dup.value.where is not None and dup.value.where.line == 10
    with pytest.raises(SpecError) as broken:
        repo.resolve("broken")
    assert broken.value.message.startswith("broken.yaml is not valid YAML: ")
    assert (
        broken.value.where is not None
        and Path(broken.value.where.path) == tmp_path / "baselines" / "broken.yaml"
    )


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("name: x\nversion: !!int one\n", "the value 'one' is not a valid !!int", 2),
        ("name: x\nwhen: !!timestamp soon\n", "the value 'soon' is not a valid !!timestamp", 2),
        ("name: x\nconda: &a [*a]\n", "an alias refers to a value that contains it", 2),
        ("name: x\n? [1, 2]\n: pip\n", "a key must be a plain value, not a list or a mapping", 2),
        ("name: x\nimage: {[1]: 2}\n", "a key must be a plain value, not a list or a mapping", 2),
        ("a: " + "[" * 5000 + "]" * 5000, "collections are nested deeper than this parser can follow", 1),
    ],
)
def test_a_value_pyyaml_cannot_construct_is_refused_with_its_line(
    tmp_path: Path, text: str, message: str, line: int
) -> None:
    # pyyaml raises ValueError, AttributeError, TypeError or RecursionError for these.
    with pytest.raises(SpecError) as caught:
        _repo(tmp_path, odd=text).resolve("odd")
    assert caught.value.message == f"odd.yaml is not valid YAML: {message}"
    assert caught.value.where is not None
    assert (Path(caught.value.where.path), caught.value.where.line) == (
        tmp_path / "baselines" / "odd.yaml",
        line,
    )
    assert caught.value.hint == (
        "write it as plain mappings and lists, as the examples in baselines/ are"
        if "nested" in message
        else "check indentation and quoting near that line"
    )


def test_aliases_that_expand_a_small_file_into_a_billion_values_are_refused(tmp_path: Path) -> None:
    # "billion laughs": nine lines of ten aliases each; as a tree, 10**9 strings.
    levels = ["a: &l0 [" + ", ".join(["lol"] * 10) + "]"]
    levels += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 9)]
    text = "name: x\n" + "\n".join(levels) + "\n"
    assert len(text) < 1000
    with pytest.raises(SpecError) as caught:
        _repo(tmp_path, odd=text).resolve("odd")
    assert caught.value.message == (
        "odd.yaml is not valid YAML: the document holds more than 100,000 values once its aliases are followed"
    )
    assert caught.value.where is not None and caught.value.where.line is not None


def test_a_file_with_many_values_and_a_few_aliases_is_read() -> None:
    from baseliner.yamlsource import MAX_VALUES, parse_yaml

    # a long pip list, and an anchor used twice: far below the limit, whatever the file's size
    text = "pip: &p [" + ", ".join(f"pkg{i}" for i in range(5000)) + "]\nagain: *p\n"
    source = parse_yaml(text, Path("big.yaml"))
    assert source.data["again"] == source.data["pip"] and len(source.lines) < MAX_VALUES


def test_unknown_names_list_the_known_ones_and_how_many_more(tmp_path: Path) -> None:
    five = {f"b{i}": ROOT.replace("name: root", f"name: b{i}") for i in range(5)}
    repo = _repo(
        tmp_path,
        **five,
        orphan=CHILD.replace("name: child", "name: orphan").replace("extends: root", "extends: gone"),
    )
    with pytest.raises(SpecError) as unknown:
        repo.resolve("nope")
    assert unknown.value.message == "unknown baseline 'nope'"
    assert unknown.value.details == ["known: b0, b1, b2, +3 others"]
    assert unknown.value.hint == f"create {tmp_path / 'baselines' / 'nope.yaml'} or pick a known name"
    with pytest.raises(SpecError) as parent:
        repo.resolve("orphan")
    assert parent.value.details == ["extends: unknown baseline 'gone' (known: b0, b1, b2, +2 others)"]
    assert parent.value.hint == "fix the file, then run `invoke validate -n orphan`"
    alone = _repo(
        tmp_path / "alone",
        orphan=CHILD.replace("name: child", "name: orphan").replace("extends: root", "extends: gone"),
    )
    with pytest.raises(SpecError) as lonely:
        alone.resolve("orphan")
    assert lonely.value.details == ["extends: unknown baseline 'gone' (known: none)"]
    with pytest.raises(SpecError) as empty:
        _repo(tmp_path / "empty").resolve("x")
    assert empty.value.details == ["no baselines/*.yaml found"]
