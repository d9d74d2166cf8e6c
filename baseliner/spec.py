"""Baseline specs: the strict YAML models, loading with file:line errors, and `extends:`.

A baseline lives in `baselines/NAME.yaml`. The file is parsed with pyyaml's safe loader and
validated by frozen pydantic models that reject unknown keys and numbers where strings belong
(`version: 2026.11` is a float in YAML; it must be quoted).

How `extends:` merges a child onto its parent
----------------------------------------------
`extends:` names another baseline in the same directory. The chain is resolved from the root down;
`baselines/*.yaml` is the single source of truth for the hierarchy. At each level:

* ``name``, ``version``, ``description``: the child's own (never inherited).
* ``channels``: the parent's channels first, in the parent's order (strict priority), then the
  child's channels that the parent does not list. A child cannot drop or reorder a parent channel.
  parent ``[conda-forge]`` + child ``[pytorch]`` → ``[conda-forge, pytorch]``.
* ``platforms``: inherited when the child says nothing; otherwise it must be a subset of the
  parent's (a child cannot be built where its parent was never locked).
* ``conda`` and ``pip``: every parent requirement is kept and the child's are added. A child that
  names a package again *adds* a constraint, which the solver must satisfy together with the
  parent's: parent ``numpy >=1.24`` + child ``numpy <2`` → both apply (a tightened pin). A child
  cannot loosen (``numpy`` alone changes nothing) and cannot drop a package. A child pin that
  contradicts its parent fails the solve, which names the level that asked for each.
* ``virtual_packages``: merged per platform; the child's entry for the same virtual package wins.
* ``image`` and ``pack``: field by field; a field the child sets wins, the rest is inherited;
  ``image.env`` and ``image.labels`` are merged key by key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import Location, SpecError
from .yamlsource import DuplicateKeyError, YamlSource, control_characters, parse_yaml

SCHEMA_VERSION = 1

# Safe as a path component and as a Docker repository and tag component.
NAME_RE = r"^[a-z0-9][a-z0-9._-]{0,62}$"
VERSION_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
PLATFORMS = ("linux-64", "linux-aarch64", "linux-ppc64le", "osx-64", "osx-arm64", "win-64")
Platform = Literal["linux-64", "linux-aarch64", "linux-ppc64le", "osx-64", "osx-arm64", "win-64"]
# An image reference: [registry[:port]/]repo[:tag][@sha256:digest], lowercase repo.
IMAGE_REF_RE = (
    r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._/-][a-z0-9]+)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
ABS_PATH_RE = r"^/[A-Za-z0-9._/-]*$"
USER_RE = r"^[a-z_][a-z0-9_-]{0,31}$"
ENV_KEY_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
LABEL_KEY_RE = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$"
CHANNEL_RE = r"^[A-Za-z0-9_./:@%+~-]+$"
VIRTUAL_RE = r"^__[a-z0-9_]+(=[A-Za-z0-9._*]+(=[A-Za-z0-9._*]+)?)?$"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _match_spec(spec: str) -> str:
    from .engine import check_match_spec  # a heavy native module: imported when used

    problem = check_match_spec(spec)
    if problem is not None:
        raise ValueError(f"{spec!r} is not a valid match spec ({problem})")
    return spec


def _pip_requirement(req: str) -> str:
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as PipRequirement

    try:
        parsed = PipRequirement(req)
    except InvalidRequirement as exc:
        raise ValueError(f"{req!r} is not a valid pip requirement ({exc})") from None
    if parsed.url:
        raise ValueError(f"{req!r}: direct URLs are not allowed; publish it to an index")
    return req


def _pattern(regex: str, what: str) -> Callable[[str], str]:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return check


MatchSpecStr = Annotated[str, AfterValidator(_match_spec)]
PipRequirementStr = Annotated[str, AfterValidator(_pip_requirement)]
ChannelStr = Annotated[str, AfterValidator(_pattern(CHANNEL_RE, "a channel name, URL or path"))]
VirtualStr = Annotated[str, AfterValidator(_pattern(VIRTUAL_RE, "a virtual package like '__glibc=2.36'"))]
EnvKey = Annotated[str, AfterValidator(_pattern(ENV_KEY_RE, "a valid environment variable name"))]
LabelKey = Annotated[
    str, AfterValidator(_pattern(LABEL_KEY_RE, "a valid label key (lowercase, dots, dashes)"))
]


class ImageSpec(StrictModel):
    """How the image is built: base image, where the env lives, who runs it."""

    base: str = Field(default="baseliner/debian-base:bookworm", pattern=IMAGE_REF_RE)
    prefix: str = Field(default="/opt/env", pattern=ABS_PATH_RE)
    user: str = Field(default="baseliner", pattern=USER_RE)
    uid: int = Field(default=1000, ge=1, le=2**31 - 1)
    gid: int = Field(default=1000, ge=1, le=2**31 - 1)
    shared_cache: str = Field(default="/opt/conda/pkgs-shared", pattern=ABS_PATH_RE)
    env: dict[EnvKey, str] = Field(default_factory=dict)
    labels: dict[LabelKey, str] = Field(default_factory=dict)


# The level a format packs at when the spec names none; measured on the demo (689 MB, 30,878
# files, two cores). gzip: zlib-ng's 3, a fifth less CPU than level 4 (conda-pack's default) for a
# file 2 % larger than conda-pack's. zstd: its own default 3, a tenth less CPU than level 4 for a
# file 1 % larger (0.89x conda-pack's .tar.gz).
DEFAULT_LEVEL: dict[str, int] = {"tar.gz": 3, "tar.zst": 3}


class PackSpec(StrictModel):
    """How the tarball is packed. The bytes depend on the format and the level only: `threads`
    changes how fast, never what is written. Unset, the level is the format's own default
    (`DEFAULT_LEVEL`) and every core compresses."""

    format: Literal["tar.gz", "tar.zst"] = "tar.gz"
    compress_level: int | None = Field(default=None, ge=0, le=19)
    threads: int = Field(default=-1, ge=-1, le=256)

    def canonical(self) -> dict[str, Any]:
        """The section as the spec hash has always held it (schema 1): an unset level as 4 and
        unset threads as 1, the values the first releases filled in. A default that changes must
        not make every committed lock stale; the build key (`output_fields`) tells them apart."""
        return {
            "format": self.format,
            "compress_level": 4 if self.compress_level is None else self.compress_level,
            "threads": self.threads if "threads" in self.model_fields_set else 1,
        }

    @property
    def level(self) -> int:
        """The level the tarball is packed at: the spec's, or else its format's default."""
        return DEFAULT_LEVEL[self.format] if self.compress_level is None else self.compress_level

    def output_fields(self) -> dict[str, Any]:
        """What the packed bytes depend on, for build keys: the format and the level it packs at
        (a new default is a new key, so no build keeps bytes its key no longer names). A new thread
        count is no reason to pack again."""
        return {"format": self.format, "compress_level": self.level}


class BaselineSpec(StrictModel):
    """One `baselines/NAME.yaml` file, exactly as written (before `extends:` is applied)."""

    schema_version: Literal[1]
    name: str = Field(pattern=NAME_RE)
    version: str = Field(pattern=VERSION_RE)
    description: str = ""
    extends: str | None = Field(default=None, pattern=NAME_RE)
    channels: list[ChannelStr] = Field(default_factory=list)
    platforms: list[Platform] | None = None
    conda: list[MatchSpecStr] = Field(default_factory=list)
    pip: list[PipRequirementStr] = Field(default_factory=list)
    virtual_packages: dict[Platform, list[VirtualStr]] = Field(default_factory=dict)
    image: ImageSpec | None = None
    pack: PackSpec | None = None

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a channel is listed twice")
        return value


@dataclass(frozen=True)
class Requirement:
    """One conda or pip requirement and the baseline (level of `extends:`) that asked for it."""

    spec: str
    origin: str


@dataclass(frozen=True)
class Baseline:
    """A baseline with `extends:` applied: what gets locked and built."""

    name: str
    version: str
    description: str
    path: Path
    chain: tuple[str, ...]  # root first, this baseline last
    channels: tuple[str, ...]
    platforms: tuple[str, ...]
    conda: tuple[Requirement, ...]
    pip: tuple[Requirement, ...]
    virtual_packages: Mapping[str, tuple[str, ...]]
    image: ImageSpec
    pack: PackSpec

    def canonical(self) -> dict[str, Any]:
        """The inputs of the solve and build, in a canonical, versioned form."""
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "version": self.version,
            "channels": list(self.channels),
            "platforms": sorted(self.platforms),
            "conda": sorted({r.spec for r in self.conda}),
            "pip": sorted({r.spec for r in self.pip}),
            "virtual_packages": {k: sorted(v) for k, v in sorted(self.virtual_packages.items())},
            "image": self.image.model_dump(mode="json"),
            "pack": self.pack.canonical(),
        }

    @property
    def spec_hash(self) -> str:
        """sha256 of the canonical JSON of the resolved spec (sorted keys)."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def conda_specs(self) -> list[str]:
        return list(dict.fromkeys(r.spec for r in self.conda))

    @property
    def pip_specs(self) -> list[str]:
        return list(dict.fromkeys(r.spec for r in self.pip))


# --- loading ---------------------------------------------------------------------------------

_HINT = "fix the file, then run `invoke validate -n {name}`"


def _key(loc: Sequence[Any]) -> str:
    """A key path as errors show it: `image.env.A`, `conda[1]`."""
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")


def _describe(error: Mapping[str, Any]) -> str:
    loc = error["loc"]
    where = _key(loc)
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        return f"{where}: unknown key"
    if kind == "string_type" and isinstance(value, int | float):
        return f"{where}: {value!r} is a number, a string is needed — quote it (YAML reads 3.10 as 3.1)"
    if kind == "string_pattern_mismatch":
        return f"{where}: {value!r} is not allowed here (safe characters only: {error['ctx']['pattern']})"
    if kind == "literal_error" and loc and loc[0] == "schema_version":
        return f"schema_version: {value!r} is not supported (this baseliner reads {SCHEMA_VERSION})"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _escape(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii")


def _check_text(node: Any, path: tuple[Any, ...], found: list[tuple[tuple[Any, ...], str]]) -> None:
    if isinstance(node, str):
        bad = control_characters(node)
        if bad:
            found.append((path, f"control character {bad[0]} in {node[:40]!r}"))
    elif isinstance(node, dict):
        for key, value in node.items():
            _check_text(key, (*path, key), found)
            _check_text(value, (*path, key), found)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_text(value, (*path, i), found)


def read_source(path: Path) -> YamlSource:
    """Read and parse a YAML file; malformed YAML becomes a SpecError with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"spec file {str(path)!r} does not exist") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"spec file {str(path)!r} is not UTF-8 text ({exc.reason})") from None
    try:
        source = parse_yaml(text, path)
    except DuplicateKeyError as exc:
        key = ".".join(map(str, exc.path))
        raise SpecError(
            f"{path.name} gives the key {key!r} twice (lines {exc.lines[0]} and {exc.lines[1]})",
            where=Location(path, exc.lines[1]),
            details=["YAML would keep only the second value and silently drop the first"],
            hint="merge the two into one key",
        ) from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise SpecError(
            f"{path.name} is not valid YAML: {exc.problem}",
            where=Location(path, line),
            hint="check indentation and quoting near that line",
        ) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. a control character
        line = text[: exc.position].count("\n") + 1
        raise SpecError(
            f"{path.name} is not valid YAML: character {exc.character!r} is not allowed in YAML",
            where=Location(path, line),
            hint="remove the character (control characters cannot appear in a YAML file)",
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(
            f"{path.name} is not valid YAML: {exc}",
            where=Location(path, 1),
            hint="write it as plain mappings and lists, as the examples in baselines/ are",
        ) from None
    return source


def validate_model(
    model: type[StrictModel], source: YamlSource, what: str, name: str, hint: str | None = None
) -> Any:
    """Validate parsed YAML against `model`; every problem names its key and line. `hint` says
    how to check the file again (default: `invoke validate` of baseline `name`)."""
    hint = hint or _HINT.format(name=name)
    if not isinstance(source.data, dict):
        found = "it is empty" if source.data is None else f"it holds a {type(source.data).__name__}"
        raise SpecError(
            f"{what} {name!r} is invalid: the file must be a mapping of keys ({found})",
            where=Location(source.path, source.line_of(()) or 1),
            hint=hint,
        )
    problems: list[tuple[tuple[Any, ...], str]] = []
    _check_text(source.data, (), problems)
    if not problems:
        try:
            return model.model_validate(source.data)
        except ValidationError as exc:
            problems = [(tuple(e["loc"]), _describe(e)) for e in exc.errors()]
    else:
        problems = [(loc, f"{_escape(_key(loc)) or 'file'}: {msg}") for loc, msg in problems]
    problems.sort(key=lambda p: source.line_of(p[0]) or 0)
    first_line = source.line_of(problems[0][0])
    raise SpecError(
        f"{what} {name!r} is invalid",
        where=Location(source.path, first_line),
        details=[f"{msg} (line {source.line_of(loc)})" for loc, msg in problems],
        hint=hint,
    )


def load_spec(path: Path) -> tuple[BaselineSpec, YamlSource]:
    """Load one baseline file as written; the name must equal the file name."""
    source = read_source(path)
    spec: BaselineSpec = validate_model(BaselineSpec, source, "baseline", path.stem)
    if spec.name != path.stem:
        raise SpecError(
            f"baseline {path.stem!r} is invalid",
            where=source.where(("name",)),
            details=[f"name: {spec.name!r} must equal the file name {path.stem!r}"],
            hint=f"rename the file or set `name: {path.stem}`",
        )
    return spec, source


class BaselineRepo:
    """The baselines of one directory (`baselines/*.yaml`), with `extends:` resolved on demand."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._specs: dict[str, tuple[BaselineSpec, YamlSource]] = {}

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.yaml"))

    def path_of(self, name: str) -> Path:
        return self.directory / f"{name}.yaml"

    def raw(self, name: str) -> tuple[BaselineSpec, YamlSource]:
        if name not in self._specs:
            path = self.path_of(name)
            if not path.is_file():
                known = self.names()
                raise SpecError(
                    f"unknown baseline {name!r}",
                    details=[
                        f"known: {', '.join(known[:3])}"
                        + (f", +{len(known) - 3} others" if len(known) > 3 else "")
                    ]
                    if known
                    else ["no baselines/*.yaml found"],
                    hint=f"create {path} or pick a known name",
                )
            self._specs[name] = load_spec(path)
        return self._specs[name]

    def chain(self, name: str) -> list[str]:
        """The `extends:` chain, root first; unknown parents and cycles are SpecErrors."""
        seen: list[str] = []
        current: str | None = name
        while current is not None:
            if current in seen:
                cycle = " -> ".join([*seen[seen.index(current) :], current])
                spec, source = self.raw(seen[0])
                raise SpecError(
                    f"baseline {name!r} is invalid",
                    where=source.where(("extends",)),
                    details=[f"extends: cycle {cycle}"],
                    hint="remove one `extends:` of the cycle",
                )
            child = current
            spec, source = self.raw(child)
            seen.append(child)
            current = spec.extends
            if current is not None and not self.path_of(current).is_file():
                known = [n for n in self.names() if n != child]
                shown = ", ".join(known[:3]) + (f", +{len(known) - 3} others" if len(known) > 3 else "")
                raise SpecError(
                    f"baseline {child!r} is invalid",
                    where=source.where(("extends",)),
                    details=[f"extends: unknown baseline {current!r} (known: {shown or 'none'})"],
                    hint=f"fix the file, then run `invoke validate -n {child}`",
                )
        return list(reversed(seen))

    def resolve(self, name: str) -> Baseline:
        """Apply `extends:` (see the module docstring for the rules)."""
        chain = self.chain(name)
        root_spec, _ = self.raw(chain[0])
        channels: list[str] = list(root_spec.channels)
        platforms: list[str] = list(root_spec.platforms or ["linux-64"])
        conda = [Requirement(s, chain[0]) for s in root_spec.conda]
        pip = [Requirement(s, chain[0]) for s in root_spec.pip]
        virtual = {p: _virtual_map(v) for p, v in root_spec.virtual_packages.items()}
        image = root_spec.image or ImageSpec()
        pack = root_spec.pack or PackSpec()
        for level in chain[1:]:
            spec, source = self.raw(level)
            channels += [c for c in spec.channels if c not in channels]
            if spec.platforms is not None:
                extra = sorted(set(spec.platforms) - set(platforms))
                if extra:
                    raise SpecError(
                        f"baseline {level!r} is invalid",
                        where=source.where(("platforms",)),
                        details=[f"platforms: {', '.join(extra)} not locked by the parent {spec.extends!r}"],
                        hint="add the platform to the parent, or drop it here",
                    )
                platforms = list(spec.platforms)
            conda += [Requirement(s, level) for s in spec.conda]
            pip += [Requirement(s, level) for s in spec.pip]
            for plat, entries in spec.virtual_packages.items():
                virtual.setdefault(plat, {}).update(_virtual_map(entries))
            image = _merge_model(image, spec.image)
            pack = _merge_model(pack, spec.pack)
        spec, source = self.raw(name)
        return Baseline(
            name=spec.name,
            version=spec.version,
            description=spec.description,
            path=source.path,
            chain=tuple(chain),
            channels=tuple(channels),
            platforms=tuple(platforms),
            conda=tuple(conda),
            pip=tuple(pip),
            virtual_packages={p: tuple(v.values()) for p, v in sorted(virtual.items())},
            image=image,
            pack=pack,
        )

    def resolve_all(self) -> list[Baseline]:
        """Every baseline, parents before children (`extends:` order)."""
        ordered: list[str] = []
        for name in self.names():
            for level in self.chain(name):
                if level not in ordered:
                    ordered.append(level)
        return [self.resolve(n) for n in ordered]


def _virtual_map(entries: list[str]) -> dict[str, str]:
    return {entry.split("=", 1)[0]: entry for entry in entries}


def _merge_model(parent: Any, child: Any) -> Any:
    if child is None:
        return parent
    update: dict[str, Any] = {}
    for field in child.model_fields_set:
        value = getattr(child, field)
        old = getattr(parent, field)
        update[field] = {**old, **value} if isinstance(value, dict) else value
    return parent.model_copy(update=update)
