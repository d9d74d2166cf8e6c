"""Tasks that build, unpack and publish baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invoke import Context, task

from ._shell import _emit_json, _print_build, _report, _store, _user_errors, console, project


@task(
    name="base-image",
    help={"tag": "tag of the imported image", "suite": "Debian suite for debootstrap"},
)
@_user_errors
def base_image(c: Context, tag: str = "", suite: str = "bookworm") -> None:
    """Build the local minimal Debian base image (debootstrap + docker import), once."""
    from ..images import BASE_IMAGE, build_base_image, connect

    built = build_base_image(connect(), tag or BASE_IMAGE, suite, report=_report)
    console.print(f"[green]ok[/green] base image {built}")


def _build(c: Context, names: list[str], no_image: bool, force: bool, json: bool, platform: str) -> None:
    from ..build import BuildOptions, build_baseline

    proj = project(c)
    options = BuildOptions(image=not no_image, force=force, platform=platform)
    results = []
    for name in names:
        with console.status(f"building {name}") as status:

            def report(message: str, status: Any = status, name: str = name) -> None:
                status.update(f"building {name}: {message[:100]}")

            result = build_baseline(proj, name, options, report)
        results.append(result)
        if json:
            continue
        _print_build(result)
    if json:
        _emit_json([r.as_dict() for r in results])


@task(
    name="build-baseline",
    positional=["name"],
    help={
        "name": "baseline to build",
        "no_image": "skip the image on purpose (env, tarball and render only)",
        "force": "rebuild even when nothing changed",
        "json": "print the build result as JSON",
        "platform": "the platform to build, one of the spec's `platforms` (default linux-64)",
    },
)
@_user_errors
def build_baseline_task(
    c: Context,
    name: str,
    no_image: bool = False,
    force: bool = False,
    json: bool = False,
    platform: str = "linux-64",
) -> None:
    """Lock (if stale), install, lint, pack, render, build the image and smoke-test it."""
    _build(c, [name], no_image, force, json, platform)


@task(
    name="build-all",
    help={
        "no_image": "skip images",
        "force": "rebuild everything",
        "json": "JSON output",
        "platform": "the platform to build (default linux-64)",
    },
)
@_user_errors
def build_all(
    c: Context, no_image: bool = False, force: bool = False, json: bool = False, platform: str = "linux-64"
) -> None:
    """Build every baseline, parents before children (`extends:` order)."""
    proj = project(c)
    _build(c, [b.name for b in proj.repo().resolve_all()], no_image, force, json, platform)


@task(
    positional=["tarball", "dest"],
    help={
        "tarball": "a tarball made by build-baseline (its .sha256 next to it)",
        "dest": "new directory to unpack into",
        "no_verify": "skip the checksum (only if you verified it another way)",
    },
)
@_user_errors
def unpack(c: Context, tarball: str, dest: str, no_verify: bool = False) -> None:
    """Verify, extract safely and conda-unpack a tarball (a delta: apply onto the base at DEST).

    A baseline tarball is unpacked into the new directory DEST; an overlay's delta tarball is
    applied on top of the unpacked base at DEST, which must hold the base it was built on."""
    from ..overlay_build import unpack_any

    prefix = unpack_any(Path(tarball), Path(dest), verify=not no_verify, report=_report)
    console.print(f"[green]ok[/green] environment ready at {prefix} (python: {prefix / 'bin' / 'python'})")


@task(
    positional=["name"],
    help={
        "name": "baseline to publish (built first with build-baseline)",
        "store": "artifact store directory (default: `store` in baseliner.yaml)",
        "registry": "push the image tags to HOST[:PORT]/ORG and record the digest",
        "platform": "the platform built (default linux-64)",
    },
)
@_user_errors
def publish(c: Context, name: str, store: str = "", registry: str = "", platform: str = "linux-64") -> None:
    """Publish a built baseline (manifest, tarball, locks, SBOM, image digest) to the store."""
    from ..publish import publish_baseline

    proj = project(c)
    entry = publish_baseline(proj, name, _store(proj, store), registry or None, _report, platform)
    console.print(f"[green]published[/green] {name} -> {store or proj.store_location}")
    if entry.get("image") and entry["image"].get("digest"):
        console.print(f"image    {entry['image']['digest']}")


@task(
    name="ci-matrix",
    help={
        "format": "github (a JSON matrix per level) or gitlab (a child pipeline)",
        "store": "the store each job publishes to (default: `store` in baseliner.yaml)",
        "registry": "push each job's image to HOST[:PORT]/ORG",
    },
)
@_user_errors
def ci_matrix(c: Context, format: str = "github", store: str = "", registry: str = "") -> None:
    """Print the CI build matrix: every baseline x platform, parents' level before children's."""
    from ..cimatrix import levels, render
    from ..errors import BaselinerError

    if format not in ("github", "gitlab"):
        raise BaselinerError(f"unknown --format {format!r}", hint="use --format github or --format gitlab")
    print(render(levels(project(c).repo(), store, registry), format))  # type: ignore[arg-type]


@task(
    positional=["ref"],
    help={
        "ref": "NAME@VERSION of a published baseline",
        "store": "the store to pull from, e.g. oci://HOST[:PORT]/ORG (default: `store` in baseliner.yaml)",
        "dest": "directory the tarball and its .sha256 go to (default: the current one)",
    },
)
@_user_errors
def pull(c: Context, ref: str, store: str = "", dest: str = ".") -> None:
    """Download a published tarball and its checksum, verified, ready to unpack offline."""
    from ..store import pull as pull_files

    proj = project(c)
    with console.status(f"pulling {ref}"):
        tarball, _ = pull_files(_store(proj, store), ref, Path(dest))
    console.print(f"[green]ok[/green] {tarball} (and its .sha256)")
    console.print(f"next: baseliner unpack {tarball} DEST")
