"""Rendering: the build context of each baseline image, from `templates/*.j2` with jinja2.

One jinja `Environment` (StrictUndefined, keep_trailing_newline, trim_blocks, lstrip_blocks) reads
the repo's `templates/` first and the templates shipped with the package second, so a repo can
override any template. Logic lives here; templates only loop and branch. Every value that reaches a
Dockerfile line passes `docker_string` (an allowlist: no control characters, quoted, `$` escaped),
on top of the spec's own patterns. Outputs hold no timestamp: rendering twice gives the same bytes.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from .atomic import write_atomic
from .errors import RenderError
from .lock import LockPaths, lock_hash, read_lock
from .pypi import parse_pip_lock
from .spec import Baseline
from .yamlsource import control_characters

if TYPE_CHECKING:
    from .activation import EnvValue

PACKAGE_TEMPLATES = Path(__file__).parent / "templates"
OUTPUTS = ("Dockerfile", "entrypoint.sh", "environment.yml", "condarc", "README.md")
_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9@%+=:,./_-]+$")


def docker_string(value: object) -> str:
    """A value as a double-quoted Dockerfile string; control characters are refused."""
    text = str(value)
    bad = control_characters(text)
    if bad:
        raise RenderError(f"value {text[:40]!r} holds a control character ({bad[0]})", hint="fix the spec")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def docker_env_value(value: EnvValue, name: str) -> str:
    """An activation value as a double-quoted ENV value: literal text escaped, the image's own
    value of the variable (when it inherits it) as `${NAME}`."""
    inherited = "${" + name + "}" + docker_string(value.tail)[1:-1] if value.inherits else ""
    return f'"{docker_string(value.head)[1:-1]}{inherited}"'


def docker_token(value: object) -> str:
    """A value placed unquoted on a Dockerfile line: only an allowlist of characters passes."""
    text = str(value)
    if not _SAFE_TOKEN.match(text):
        raise RenderError(f"value {text[:40]!r} is not allowed on a Dockerfile line", hint="fix the spec")
    return text


def yaml_string(value: object) -> str:
    """A value as a quoted YAML (JSON) string; control characters are refused."""
    text = str(value)
    if control_characters(text):
        raise RenderError(f"value {text[:40]!r} holds a control character", hint="fix the spec")
    return json.dumps(text, ensure_ascii=False)


def human_bytes(value: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as du -h --si)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


@functools.lru_cache(maxsize=8)
def environment(templates_dir: Path | None = None) -> jinja2.Environment:
    """The one jinja environment: the repo's templates first, the packaged ones second. One per
    directory and process, so each template is compiled once (and again when its file changes)."""
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None:
        loaders.append(jinja2.FileSystemLoader(templates_dir))
    loaders.append(jinja2.FileSystemLoader(PACKAGE_TEMPLATES))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(
        dq=docker_string, denv=docker_env_value, tok=docker_token, yq=yaml_string, bytes=human_bytes
    )
    return env


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    build: str
    channel: str


def _packages(baseline: Baseline, platform: str) -> tuple[list[LockedPackage], list[tuple[str, str]]]:
    locked = read_lock(baseline, platform)
    conda = sorted(
        (
            LockedPackage(
                str(r.name.normalized),
                str(r.version),
                str(r.build),
                str(r.channel).rstrip("/"),
            )
            for r in locked.records
        ),
        key=lambda p: p.name,
    )
    pip: list[tuple[str, str]] = []
    if locked.pip_lock is not None:
        pip = [(p.name, p.version) for p in parse_pip_lock(locked.pip_lock.read_text(encoding="utf-8"))]
    return conda, pip


@dataclass(frozen=True)
class CondaChannel:
    """A spec's channel as conda names it: a name, and for a URL channel the base URL that
    `custom_channels` maps the name to (conda reads `https://host/path/NAME` as `NAME` there)."""

    name: str
    base_url: str | None


def conda_channels(channels: Sequence[str]) -> list[CondaChannel]:
    """Spec channels split into what `.condarc` needs (name and custom channel URL)."""
    out = []
    for channel in channels:
        if channel.startswith(("http://", "https://")):
            base, _, name = channel.rstrip("/").rpartition("/")
            out.append(CondaChannel(name, base))
        else:
            out.append(CondaChannel(channel, None))
    return out


def image_prefix_user_cache(baseline: Baseline) -> str:
    """The image user's own package cache, where conda writes new packages."""
    return f"/home/{baseline.image.user}/.conda/pkgs"


def context(baseline: Baseline, tarball_name: str) -> dict[str, Any]:
    """Everything the templates see, computed here so templates only loop and branch."""
    platform = "linux-64" if "linux-64" in baseline.platforms else sorted(baseline.platforms)[0]
    conda, pip = _packages(baseline, platform)
    lhash = lock_hash(baseline.path)
    image = baseline.image
    user_cache = image_prefix_user_cache(baseline)
    channels = conda_channels(baseline.channels)
    labels = {
        "org.opencontainers.image.title": baseline.name,
        "org.opencontainers.image.version": baseline.version,
        "org.opencontainers.image.description": baseline.description or baseline.name,
        "io.baseliner.spec-file": f"baselines/{baseline.path.name}",
        "io.baseliner.lock-hash": lhash,
        "io.baseliner.spec-hash": baseline.spec_hash,
        **image.labels,
    }
    env = {
        "PATH": f"{image.prefix}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "CONDA_PREFIX": image.prefix,
        "CONDA_PKGS_DIRS": f"{user_cache},{image.shared_cache}",
        "CONDARC": "/etc/conda/condarc",
        **image.env,
    }
    return {
        "baseline": baseline,
        "header": (
            f"generated by baseliner from baselines/{baseline.path.name} — do not edit; "
            f"regenerate with `invoke render -n {baseline.name}`"
        ),
        "source": f"baselines/{baseline.path.name}",
        "platform": platform,
        "platforms": sorted(baseline.platforms),
        "conda_packages": conda,
        "pip_packages": pip,
        "channels": [c.name for c in channels],
        "custom_channels": {c.name: c.base_url for c in channels if c.base_url},
        # conda installs a pip section with the env's own pip: it must be a conda dependency.
        "needs_pip": bool(pip) and not any(p.name == "pip" for p in conda),
        "image": image,
        "labels": dict(sorted(labels.items())),
        "env": env,
        "user_cache": user_cache,
        "tarball": tarball_name,
        "lock_hash": lhash,
        "tag_short": f"{baseline.version}-{lhash[:12]}",
        "explicit_files": [f"explicit-{p}.txt" for p in sorted(baseline.platforms)],
    }


def tarball_name(baseline: Baseline) -> str:
    """The tarball's name inside the image build context."""
    return f"env.{baseline.pack.format}"


def render_outputs(baseline: Baseline, templates_dir: Path | None = None) -> dict[str, bytes]:
    """The files of `images/NAME/`, by name."""
    env = environment(templates_dir)
    ctx = context(baseline, tarball_name(baseline))
    out: dict[str, bytes] = {}
    for name in OUTPUTS:
        try:
            out[name] = env.get_template(f"{name}.j2").render(ctx).encode()
        except jinja2.UndefinedError as exc:
            raise RenderError(f"template {name}.j2 uses an undefined value: {exc.message}") from exc
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {name}.j2 failed: {exc}") from exc
    paths = LockPaths(baseline.path)
    for platform in sorted(baseline.platforms):
        out[f"explicit-{platform}.txt"] = paths.explicit(platform).read_bytes()
    return out


def render_activation(
    name: str, image_id: str, activation: Mapping[str, EnvValue], templates_dir: Path | None = None
) -> bytes:
    """The Dockerfile that bakes the activation variables into the built image `image_id` as ENV."""
    ctx = {"name": name, "image_id": image_id, "activation": dict(sorted(activation.items()))}
    try:
        return environment(templates_dir).get_template("activation.Dockerfile.j2").render(ctx).encode()
    except jinja2.TemplateError as exc:
        raise RenderError(f"template activation.Dockerfile.j2 failed: {exc}") from exc


def write_outputs(outputs: Mapping[str, bytes], directory: Path) -> list[Path]:
    """Write rendered files atomically; files no longer rendered are removed."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in sorted(outputs.items()):
        written.append(write_atomic(directory / name, data))
    for old in directory.iterdir():
        if old.is_file() and old.name not in outputs:
            old.unlink()
    return written


def out_of_date(outputs: Mapping[str, bytes], directory: Path) -> list[str]:
    """Names of files in `directory` that differ from `outputs` (missing, changed or extra)."""
    stale = [
        n
        for n, data in sorted(outputs.items())
        if not (directory / n).is_file() or (directory / n).read_bytes() != data
    ]
    if directory.is_dir():
        stale += sorted(p.name for p in directory.iterdir() if p.is_file() and p.name not in outputs)
    return stale


def render_overlay_context(
    name: str,
    source: str,
    base_image: str,
    delta: str,
    fmt: str,
    delta_files: list[str],
    labels: dict[str, str],
    image: Any,
    templates_dir: Path | None = None,
) -> dict[str, bytes]:
    """The build context of an overlay image (Dockerfile + the list of the delta's files)."""
    for path in delta_files:
        if control_characters(path):
            raise RenderError(f"delta file name {path[:40]!r} holds a control character")
    ctx = {
        "header": f"generated by baseliner from {source} — do not edit; regenerate with `baseliner build-overlay {source}`",
        "name": name,
        "base_image": base_image,
        "delta": delta,
        "fmt": fmt,
        "prefix": image.prefix,
        "uid": image.uid,
        "gid": image.gid,
        "labels": dict(sorted(labels.items())),
    }
    try:
        dockerfile = environment(templates_dir).get_template("overlay.Dockerfile.j2").render(ctx)
    except jinja2.TemplateError as exc:
        raise RenderError(f"template overlay.Dockerfile.j2 failed: {exc}") from exc
    return {
        "Dockerfile": dockerfile.encode(),
        "delta-files.txt": "".join(f"{p}\n" for p in delta_files).encode(),
    }


K8S_OUTPUTS = ("k8s-pvc.yaml", "k8s-deployment.yaml", "jupyterhub-profile.yaml", "jupyterhub-values.yaml")


def render_kubernetes(
    baseline: Baseline, image_ref: str, k8s: Any, templates_dir: Path | None = None
) -> dict[str, bytes]:
    """Kubernetes manifests for a published baseline image (`image_ref`: pulled by digest)."""
    ctx = context(baseline, tarball_name(baseline))
    ctx.update(
        name=baseline.name,
        version=baseline.version,
        description=baseline.description or baseline.name,
        k8s_name=re.sub(r"[^a-z0-9-]", "-", baseline.name).strip("-")[:63],
        profile_slug=re.sub(r"[^a-z0-9]+", "-", f"{baseline.name}-{baseline.version}".lower()).strip("-")[
            :63
        ],
        image_ref=image_ref,
        k8s=k8s,
        env={k: v for k, v in ctx["env"].items() if k != "PATH"},
        header=(
            f"generated by baseliner from baselines/{baseline.path.name} — do not edit; "
            f"regenerate with `invoke publish {baseline.name}`"
        ),
    )
    env = environment(templates_dir)
    out = {}
    for name in K8S_OUTPUTS:
        try:
            out[name] = env.get_template(f"{name}.j2").render(ctx).encode()
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {name}.j2 failed: {exc}") from exc
    return out
