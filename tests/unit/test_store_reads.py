"""The store without a build: what it refuses to open, what it verifies as it reads, and how a
published version stays immutable. Each manifest here is written by hand (a real tarball file and
its checksum, no environment), so these run in milliseconds; `test_store.py` publishes real builds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from baseliner.store import Store, StoreError, open_store, publish, published_entry, pull

from ..support.serving import serve_directory


def _build(out: Path, version: str = "1.0", payload: bytes = b"an env", digest: str | None = None) -> Path:
    """dist/demo/VERSION as a build leaves it: tarball, .sha256, manifest.json; returns the manifest."""
    out.mkdir(parents=True)
    tarball = out / f"demo-{version}-linux-64.tar.gz"
    tarball.write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    (out / f"{tarball.name}.sha256").write_text(f"{sha}  {tarball.name}\n")
    image = None
    if digest is not None:
        image = {
            "tags": [f"demo:{version}"],
            "id": "sha256:1",
            "base": "debian",
            "spec": {},
            "digest": digest,
        }
    manifest: dict[str, Any] = {
        "schema_version": 1,
        "name": "demo",
        "version": version,
        "platform": "linux-64",
        "spec_hash": "s" * 64,
        "lock_hash": hashlib.sha256(b"lock " + payload).hexdigest(),
        "build_key": "k",
        "extends": [],
        "tarball": {"name": tarball.name, "format": "tar.gz", "sha256": sha, "size": len(payload)},
        "environment": {"prefix_at_build": "/opt/env", "bytes": 1, "files": 1},
        "packages": {"conda": [], "pip": []},
        "image": image,
        "tools": {},
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Store:
    lock = tmp_path / "demo.lock"
    lock.write_text("version: 6\n")
    store = Store(str(tmp_path / "store"))
    publish(store, _build(tmp_path / "dist"), [lock])
    return store


@pytest.mark.parametrize(
    "location, message",
    [
        ("s3://bucket/x", "store 's3://bucket/x': s3:// stores are not supported"),
        ("S3://bucket/x", "store 'S3://bucket/x': s3:// stores are not supported"),
        ("oci://host/org", "store 'oci://host/org' is a registry"),
        ("file://relative/x", "store 'file://relative/x': a file:// URL names an absolute path"),
        ("file://otherhost/x", "store 'file://otherhost/x': a file:// URL names an absolute path"),
    ],
)
def test_a_store_of_an_unknown_or_malformed_scheme_is_refused(location: str, message: str) -> None:
    with pytest.raises(StoreError) as caught:
        Store(location)
    assert caught.value.message == message
    if "not supported" in message:
        assert caught.value.details == [
            "supported: file:// (a directory (file:///abs/path)), http:// (read-only), https:// (read-only), "
            "oci:// (a registry: oci://HOST[:PORT]/ORG), a plain directory path"
        ]
        assert (
            caught.value.hint
            == "give a directory or an http(s) URL with --store, or as `store:` in baseliner.yaml"
        )
    elif "registry" in message:
        assert caught.value.hint == "open it with store.open_store()"
    else:
        assert caught.value.hint == "write file:///abs/path (three slashes), or give the directory itself"


def test_a_file_url_and_localhost_name_the_same_directory_as_its_path(store: Store) -> None:
    root = store.path
    for location in (f"file://{root}", f"file://localhost{root}", f"FILE://{root}", str(root)):
        same = Store(location)
        assert not same.is_remote
        assert same.path == root
        assert same.entry("demo", "1.0") == store.entry("demo", "1.0")
    assert Store("relative/dir").path == Path("relative/dir")
    assert type(open_store(str(root))) is Store


def test_an_http_store_reads_what_the_directory_holds_and_cannot_be_written(store: Store) -> None:
    with serve_directory(store.path) as url:
        for location in (url, url + "/", url.replace("http://", "HTTP://", 1)):
            remote = Store(location)
            assert remote.is_remote
            assert remote.index() == store.index()
            assert remote.manifest("demo", "1.0") == store.manifest("demo", "1.0")
        remote = Store(url)
        with pytest.raises(StoreError) as caught:
            remote.path  # noqa: B018
        assert caught.value.message == f"store {url!r} is read-only over HTTP"
        assert caught.value.hint == "publish to a directory"
        with pytest.raises(StoreError) as missing:
            remote.read_bytes("demo/9.9/manifest.json")
        assert missing.value.message == f"store entry 'demo/9.9/manifest.json' not found at {url}"
        assert missing.value.details == ["HTTP 404"]
    with pytest.raises(StoreError) as down:
        remote.read_bytes("index.json")  # the server is gone
    assert down.value.message.startswith(f"store {url!r} is unreachable: ")


def test_an_empty_store_has_an_empty_index_and_names_what_is_published(store: Store, tmp_path: Path) -> None:
    assert Store(str(tmp_path / "nothing")).index() == {"schema_version": 1, "baselines": {}}
    assert store.entry("demo", "2.0") is None
    assert store.entry("other", "1.0") is None
    for name, version, published in (("demo", "2.0", "1.0"), ("other", "1.0", "none")):
        with pytest.raises(StoreError) as caught:
            store.manifest(name, version)
        assert caught.value.message == f"{name}@{version} is not published in {store.location}"
        assert caught.value.details == [f"published versions of {name}: {published}"]
        assert caught.value.hint == f"run `invoke publish {name}` in the baselines repo"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "store entry 'index.json' is corrupt (not JSON: Expecting value at byte 0)"),
        (
            '{"schema_version": 1',
            "store entry 'index.json' is corrupt (not JSON: Expecting ',' delimiter at byte 20)",
        ),
        ("[1]", "store entry 'index.json' is corrupt (not a JSON object)"),
    ],
)
def test_a_corrupt_index_is_named_not_parsed_into_a_traceback(store: Store, text: str, message: str) -> None:
    (store.path / "index.json").write_text(text)
    with pytest.raises(StoreError) as caught:
        store.entry("demo", "1.0")
    assert caught.value.message == message
    if "not JSON" in message:
        assert caught.value.hint == "the file may be truncated; publish the baseline again"


def test_a_deleted_manifest_and_a_changed_file_are_named(store: Store, tmp_path: Path) -> None:
    version = store.path / "demo" / "1.0"
    tarball = "demo-1.0-linux-64.tar.gz"
    (version / tarball).write_bytes(b"another env")
    with pytest.raises(StoreError) as changed:
        store.fetch("demo", "1.0", tarball, tmp_path / "got" / tarball)
    assert changed.value.message == f"store file demo/1.0/{tarball} does not match its manifest checksum"
    assert changed.value.hint == "the store entry is corrupt; publish again"
    assert not (tmp_path / "got" / tarball).exists()
    (version / "manifest.json").unlink()
    with pytest.raises(StoreError) as missing:
        store.manifest("demo", "1.0")
    assert missing.value.message == f"store entry 'demo/1.0/manifest.json' is missing in {store.location}"
    assert "publish the baseline again" in (missing.value.hint or "")


def test_a_pull_brings_the_checked_tarball_and_refuses_a_bad_ref(store: Store, tmp_path: Path) -> None:
    got = pull(store, "demo@1.0", tmp_path / "pulled")
    assert [p.name for p in got] == ["demo-1.0-linux-64.tar.gz", "demo-1.0-linux-64.tar.gz.sha256"]
    assert got[0].read_bytes() == b"an env"
    assert sorted(p.name for p in (tmp_path / "pulled").iterdir()) == sorted(p.name for p in got)
    assert pull(store, "demo@1.0", tmp_path / "pulled") == got  # again into the same directory
    for ref in ("demo", "demo@", "@1.0"):
        with pytest.raises(StoreError) as caught:
            pull(store, ref, tmp_path / "bad")
        assert caught.value.message == f"{ref!r} is not NAME@VERSION"
    assert not (tmp_path / "bad").exists()


def test_a_pulled_tarball_must_have_the_sha256_its_manifest_names(store: Store, tmp_path: Path) -> None:
    # Each file matches its own checksum, and the tarball and its .sha256 agree, but the manifest
    # names another environment: the pull refuses what it would unpack.
    path = store.path / "demo" / "1.0" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["tarball"]["sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))
    with pytest.raises(StoreError) as caught:
        pull(store, "demo@1.0", tmp_path / "pulled")
    assert caught.value.message == "demo-1.0-linux-64.tar.gz does not match the sha256 its manifest names"
    assert caught.value.hint == "pull again"


def test_publishing_writes_the_index_entry_and_every_files_sha256(store: Store) -> None:
    entry = store.entry("demo", "1.0")
    manifest = store.manifest("demo", "1.0")
    assert entry == {
        "manifest": "demo/1.0/manifest.json",
        "lock_hash": manifest["lock_hash"],
        "tarball": "demo-1.0-linux-64.tar.gz",
        "sha256": hashlib.sha256(b"an env").hexdigest(),
        "image": None,
    }
    version = store.path / "demo" / "1.0"
    on_disk = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in version.iterdir()
        if p.name != "manifest.json"
    }
    assert manifest["files"] == on_disk
    assert sorted(on_disk) == [
        "demo-1.0-linux-64.tar.gz",
        "demo-1.0-linux-64.tar.gz.sha256",
        "demo.lock",
        "sbom.cdx.json",
    ]
    assert sorted(p.name for p in store.path.iterdir()) == [".index.lock", "demo", "index.json"]


def test_a_published_version_never_changes_and_may_only_gain_its_image_digest(
    store: Store, tmp_path: Path
) -> None:
    lock = tmp_path / "demo.lock"
    same = _build(tmp_path / "same")
    assert published_entry(store, json.loads(same.read_text())) == store.entry("demo", "1.0")
    assert publish(store, same, [lock]) == store.entry("demo", "1.0")  # identical content: a no-op

    other = json.loads(_build(tmp_path / "other", payload=b"other env").read_text())
    with pytest.raises(StoreError) as caught:
        published_entry(store, other)
    old = store.entry("demo", "1.0")
    assert old is not None
    assert caught.value.message == f"demo@1.0 is already published in {store.location} with other content"
    assert caught.value.details == [
        f"lock hash: published {old['lock_hash']}, this build {other['lock_hash']}"
    ]
    assert "bump `version` in baselines/demo.yaml" in (caught.value.hint or "")

    retarred = dict(other, lock_hash=old["lock_hash"])  # the same lock, another tarball
    with pytest.raises(StoreError) as tarball:
        published_entry(store, retarred)
    assert tarball.value.details == [
        f"tarball sha256: published {old['sha256']}, this build {other['tarball']['sha256']}"
    ]

    with_image = _build(tmp_path / "with-image", digest="sha256:aaa")
    assert published_entry(store, json.loads(with_image.read_text())) is None  # may add its digest
    entry = publish(store, with_image, [lock])
    assert entry["image"]["digest"] == "sha256:aaa"
    assert store.entry("demo", "1.0") == entry
    again = json.loads(_build(tmp_path / "again").read_text())  # no image: the digest stays
    assert published_entry(store, again) == entry
    moved = json.loads(_build(tmp_path / "moved", digest="sha256:bbb").read_text())
    with pytest.raises(StoreError) as image:
        published_entry(store, moved)
    assert image.value.details == ["image: published sha256:aaa, this build sha256:bbb"]
    assert sorted(p.name for p in store.path.iterdir()) == [
        ".index.lock",
        "demo",
        "index.json",
    ]  # no scratch left


def test_a_build_whose_tarball_changed_since_is_not_published(tmp_path: Path) -> None:
    manifest = _build(tmp_path / "dist")
    (tmp_path / "dist" / "demo-1.0-linux-64.tar.gz").write_bytes(b"changed after the build")
    store = Store(str(tmp_path / "store"))
    with pytest.raises(StoreError) as caught:
        publish(store, manifest, [])
    assert caught.value.message == "the built tarball of demo 1.0 is missing or changed"
    assert caught.value.hint == "run `invoke build-baseline demo` first"
    assert store.index()["baselines"] == {}
    assert not (store.path / "demo").exists()
