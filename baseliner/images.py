"""Images: the only module that imports docker. Build (streamed), tag, smoke-test, base image.

The Docker client is a parameter everywhere (created by `connect`, never at import time). Builds
use the low-level streaming API so every line of the build log reaches the progress callback, and
a failing step is reported with the step and the last lines of its log.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .atomic import Report, silent
from .concurrency import scratch_file
from .errors import DockerUnavailable, ImageError
from .smoke import SmokePlan

if TYPE_CHECKING:
    import docker

BASE_IMAGE = "baseliner/debian-base:bookworm"
# What a minimal Debian needs to run the relocatable python and unpack tarballs.
BASE_PACKAGES = (
    "libssl3",
    "libffi8",
    "libsqlite3-0",
    "libbz2-1.0",
    "liblzma5",
    "zlib1g",
    "libexpat1",
    "libreadline8",
    "libncursesw6",
    "libuuid1",
    "libgdbm6",
    "zstd",
    "ca-certificates",
)
LOG_TAIL = 20
TEST_LABEL = "io.baseliner.test"


def connect(timeout: int = 600) -> docker.DockerClient:
    """A client for the local Docker Engine; DockerUnavailable when none answers."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise DockerUnavailable(
            "no Docker Engine can be reached",
            details=[str(exc).splitlines()[0][:200]],
            hint="start one (`dockerd --bridge=none --iptables=false --ip6tables=false`) or pass --no-image",
        ) from None
    return client


def image_exists(client: docker.DockerClient, ref: str) -> bool:
    """Whether the engine has the image `ref`."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(ref)
    except ImageNotFound:
        return False
    return True


def build_base_image(
    client: docker.DockerClient,
    tag: str = BASE_IMAGE,
    suite: str = "bookworm",
    mirror: str = "http://deb.debian.org/debian",
    report: Report = silent,
) -> str:
    """Build a minimal Debian with debootstrap and `docker import` it; reused when present."""
    if image_exists(client, tag):
        report(f"base image {tag} present")
        return tag
    with tempfile.TemporaryDirectory(prefix="baseliner-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        report(f"debootstrap {suite} (minbase) into {rootfs}")
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            suite,
            str(rootfs),
            mirror,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ImageError(
                f"debootstrap of {suite} failed",
                details=proc.stdout.splitlines()[-10:] + proc.stderr.splitlines()[-10:],
                detail_limit=20,
                hint="check that debootstrap is installed and the Debian mirror is reachable",
            )
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        repo, _, version = tag.rpartition(":")
        report(f"importing {tag}")
        client.api.import_image(src=str(archive), repository=repo, tag=version)
    return tag


@dataclass(frozen=True)
class BuiltImage:
    """An image built from a context: its id and the tags it got."""

    id: str
    tags: tuple[str, ...]


def _stream_build(
    client: docker.DockerClient,
    context: Path,
    tag: str,
    buildargs: dict[str, str],
    labels: dict[str, str],
    report: Report,
) -> str:
    # The SDK would tar the context into the system's temporary directory, where a killed build
    # leaves a copy of it (the environment's tarball included) that nothing removes. Tarred here,
    # next to the context, under a scratch name the next run's sweep recognises.
    from docker.utils.build import tar

    archive = scratch_file(context.with_name(f"{context.name}.tar"))
    try:
        with archive.open("w+b") as fileobj:
            tar(str(context), fileobj=fileobj)
            fileobj.seek(0)
            return _stream_archive(client, fileobj, tag, buildargs, labels, report)
    finally:
        archive.unlink(missing_ok=True)


def _stream_archive(
    client: docker.DockerClient,
    fileobj: IO[bytes],
    tag: str,
    buildargs: dict[str, str],
    labels: dict[str, str],
    report: Report,
) -> str:
    tail: deque[str] = deque(maxlen=LOG_TAIL)
    step = "(before the first step)"
    image_id: str | None = None
    stream: Iterator[dict[str, Any]] = client.api.build(
        fileobj=fileobj,
        custom_context=True,
        tag=tag,
        rm=True,
        forcerm=True,
        decode=True,
        buildargs=buildargs,
        labels=labels,
        network_mode="none",
        pull=False,
    )
    for chunk in stream:
        if "stream" in chunk:
            for line in chunk["stream"].splitlines():
                if not line.strip():
                    continue
                if line.startswith("Step "):
                    step = line
                tail.append(line)
                report(line)
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
        if "error" in chunk or "errorDetail" in chunk:
            message = chunk.get("error") or chunk["errorDetail"].get("message", "")
            raise ImageError(
                f"docker build of {tag} failed at {step}",
                details=[*tail, f"error: {message.strip()}"],
                detail_limit=LOG_TAIL + 1,
                hint="the lines above are the end of the build log; fix the cause and build again",
            )
    if image_id is None:
        image_id = client.images.get(tag).id
    return image_id


def build_image(
    client: docker.DockerClient,
    context: Path,
    tags: Sequence[str],
    base_image: str,
    labels: dict[str, str] | None = None,
    report: Report = silent,
) -> BuiltImage:
    """Build `context` (streaming the log) and apply every tag."""
    if not image_exists(client, base_image):
        raise ImageError(
            f"base image {base_image!r} is not available to the engine",
            hint="build it with `invoke base-image`, or set `image.base` to an image the engine has",
        )
    return _build_and_tag(client, context, tags, {"BASE_IMAGE": base_image}, labels or {}, report)


def _build_and_tag(
    client: docker.DockerClient,
    context: Path,
    tags: Sequence[str],
    buildargs: dict[str, str],
    labels: dict[str, str],
    report: Report,
) -> BuiltImage:
    """Build `context` as the first tag, then give the image every other tag."""
    from docker.errors import APIError

    try:
        image_id = _stream_build(client, context, tags[0], buildargs, labels, report)
        image = client.images.get(image_id)
        for ref in tags[1:]:
            repo, _, tag = ref.rpartition(":")
            image.tag(repo, tag)
    except APIError as exc:
        raise ImageError(f"docker build of {tags[0]} failed: {exc.explanation or exc}") from exc
    return BuiltImage(id=image_id, tags=tuple(tags))


def extend_image(
    client: docker.DockerClient,
    dockerfile: bytes,
    tags: Sequence[str],
    labels: dict[str, str] | None = None,
    report: Report = silent,
) -> BuiltImage:
    """Build a one-file context (`dockerfile`, FROM an image already built) and move every tag to it."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="baseliner-extend-") as tmp:
        (Path(tmp) / "Dockerfile").write_bytes(dockerfile)
        return _build_and_tag(client, Path(tmp), tags, {}, labels or {}, report)


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    output: str


def run(
    client: docker.DockerClient,
    image: str,
    command: Sequence[str],
    volumes: dict[str, dict[str, str]] | None = None,
    user: str | None = None,
    timeout: int = 120,
    entrypoint: Sequence[str] | None = None,
) -> RunResult:
    """Run a command in a throwaway container: no network, labelled, time-limited, always removed.
    `entrypoint` replaces the image's, as a pod's `command` does."""
    container = client.containers.run(
        image,
        list(command),
        entrypoint=list(entrypoint) if entrypoint is not None else None,
        detach=True,
        network_mode="none",
        user=user,
        volumes=volumes or {},
        labels={TEST_LABEL: "smoke"},
        stderr=True,
        stdout=True,
    )
    try:
        result = container.wait(timeout=timeout)
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
        return RunResult(int(result.get("StatusCode", 1)), output)
    finally:
        _remove(container)


def _remove(container: Any) -> None:
    from docker.errors import APIError, NotFound

    try:
        container.remove(force=True, v=True)  # v: the anonymous volume of the image's VOLUME too
    except NotFound:
        pass
    except APIError as exc:  # 409: another cleanup is already removing it
        if exc.status_code != 409:
            raise


def inspect_labels(client: docker.DockerClient, ref: str) -> dict[str, str]:
    """The labels of the image `ref`."""
    return dict(client.images.get(ref).labels or {})


@dataclass(frozen=True)
class SmokeReport:
    uid: int
    imported: tuple[str, ...]
    entry_points: tuple[str, ...]
    shared_cache_read_only: bool


def smoke_test(
    client: docker.DockerClient,
    ref: str,
    plan: SmokePlan,
    shared_cache: str,
    report: Report = silent,
) -> SmokeReport:
    """Run the image as its (non-root) user with no network: import, run entry points, check the cache."""
    report(
        f"smoke test {ref}: import {len(plan.modules)} module(s), run {len(plan.entry_points)} entry point(s)"
    )
    result = run(client, ref, ["python", "-c", plan.script()])
    lines = [line for line in result.output.splitlines() if line.startswith("{")]
    if result.exit_code != 0 or not lines:
        raise ImageError(
            f"smoke test of {ref}: python did not run",
            details=result.output.strip().splitlines()[-LOG_TAIL:],
            detail_limit=LOG_TAIL,
            hint="the base image may lack a system library the interpreter needs",
        )
    data = json.loads(lines[-1])
    problems = [f"import {m}: {why}" for m, why in sorted(data["failed"].items())]
    if data["uid"] == 0:
        problems.append("the image runs as root (uid 0)")
    for entry in plan.entry_points:
        ep = run(client, ref, [entry, "--help"])
        if ep.exit_code != 0:
            tail = ep.output.strip().splitlines()[-1:] or ["(no output)"]
            problems.append(f"entry point {entry} --help exited {ep.exit_code}: {tail[0]}")
    read_only = _shared_cache_is_read_only(client, ref, shared_cache)
    if not read_only:
        problems.append(f"{shared_cache} is writable although the volume is mounted read-only")
    if problems:
        raise ImageError(
            f"smoke test of {ref} failed",
            details=problems,
            detail_limit=10,
            hint="fix the spec (missing dependency?) and build again",
        )
    return SmokeReport(int(data["uid"]), tuple(data["imported"]), plan.entry_points, read_only)


def _shared_cache_is_read_only(client: docker.DockerClient, ref: str, path: str) -> bool:
    volume = client.volumes.create(labels={TEST_LABEL: "smoke"})
    try:
        probe = run(
            client,
            ref,
            [
                "sh",
                "-c",
                f'test -d "{path}" && case ",$CONDA_PKGS_DIRS," in *",{path},"*) ;; *) exit 3;; esac; '
                f'touch "{path}/.baseliner-write-probe" 2>/dev/null && exit 0; exit 1',
            ],
            volumes={volume.name: {"bind": path, "mode": "ro"}},
        )
        return probe.exit_code == 1
    finally:
        volume.remove(force=True)


def push(client: docker.DockerClient, ref: str, repository: str, tag: str, report: Report = silent) -> str:
    """Tag `ref` as repository:tag and push it; returns `repository@sha256:…` (the pushed digest).

    Credentials come from the Docker config or the engine, never from a spec; nothing of them is
    logged (push status lines carry none)."""
    from docker.errors import APIError

    client.images.get(ref).tag(repository, tag)
    digest = None
    try:
        for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise ImageError(
                    f"push of {repository}:{tag} failed: {chunk['error']}",
                    hint="check that the registry is reachable and you are logged in (`docker login`)",
                )
            if "status" in chunk and "id" not in chunk:
                report(chunk["status"])
            aux = chunk.get("aux") or {}
            if "Digest" in aux:
                digest = aux["Digest"]
    except APIError as exc:
        raise ImageError(f"push of {repository}:{tag} failed: {exc.explanation or exc}") from exc
    if digest is None:
        raise ImageError(f"push of {repository}:{tag} reported no digest")
    return f"{repository}@{digest}"


def refuse_moved_tag(
    client: docker.DockerClient, ref: str, repository: str, tag: str, lock_hash: str
) -> None:
    """Raise when `repository:tag` is already in the registry and points to another image than
    `ref` (a pushed tag never moves). A tag that is absent, or that this image was pushed as, passes."""
    from docker.errors import APIError, NotFound

    try:
        remote = client.api.inspect_distribution(f"{repository}:{tag}")["Descriptor"]["digest"]
    except NotFound:
        return
    except APIError as exc:
        if exc.status_code in (401, 403, 404) or "manifest unknown" in str(exc):
            return  # not there, or not visible: the push itself reports a real access problem
        raise ImageError(f"could not look up {repository}:{tag}: {exc.explanation or exc}") from exc
    if f"{repository}@{remote}" in (client.images.get(ref).attrs.get("RepoDigests") or []):
        return
    raise ImageError(
        f"registry tag {repository}:{tag} already points to another image",
        details=[f"in the registry: {repository}@{remote}", f"this build: {ref} (lock hash {lock_hash})"],
        hint="published tags never move: bump `version` in the spec and build again",
    )


def ensure_image(client: docker.DockerClient, ref: str, report: Report = silent) -> str:
    """Make `ref` available locally (pulling a digest reference if needed); returns its image id."""
    from docker.errors import APIError

    if not image_exists(client, ref):
        report(f"pulling {ref}")
        try:
            client.images.pull(ref)
        except APIError as exc:
            raise ImageError(
                f"base image {ref} is not available: {exc.explanation or exc}",
                hint="pull it, or publish the base with --registry",
            ) from exc
    return str(client.images.get(ref).id)


def export_volume(
    client: docker.DockerClient, source: Path, volume_name: str, image: str = BASE_IMAGE
) -> str:
    """Create (or refill) a Docker volume holding a copy of `source` (the shared package cache)."""
    volume = client.volumes.create(name=volume_name, labels={"io.baseliner.shared-cache": "1"})
    result = run(
        client,
        image,
        # No write bit anywhere: consumers (conda, py-rattler) then treat it as a read-only layer.
        ["sh", "-c", "cp -a /src/. /dst/ && chmod -R a+rX,a-w /dst"],
        volumes={
            str(source.resolve()): {"bind": "/src", "mode": "ro"},
            volume.name: {"bind": "/dst", "mode": "rw"},
        },
        user="0",
        timeout=1800,
    )
    if result.exit_code != 0:
        raise ImageError(f"filling volume {volume_name} failed", details=result.output.splitlines()[-10:])
    return str(volume.name)
