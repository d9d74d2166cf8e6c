"""The org config (`baseliner.yaml` at the repo root) and the paths of a baselines repo.

The config maps channel names to mirrors, so a spec that says `conda-forge` is built against an
internal or offline mirror without editing specs, and names where caches and outputs go.
Relative paths are relative to the directory holding the config. Every key is optional.

    schema_version: 1
    channel_mirrors:
      conda-forge: https://conda.internal.example/conda-forge
      https://conda.example.org/org: build/channel   # a directory (or file:// URL)
    pip_index_url: https://pypi.org/simple        # where the org channel's wheels come from
    pip_mirror: build/pypi                         # the org's PyPI mirror (`invoke channel` fills it):
                                                   # pip sections lock and install from it, offline
    package_cache: build/pkgs
    dist: dist
    store: dist/store                       # artifact store: a directory, file:/// or http(s) URL
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field

from .spec import CHANNEL_RE, BaselineRepo, StrictModel, read_source, validate_model

CONFIG_NAME = "baseliner.yaml"


class KubernetesConfig(StrictModel):
    """What the rendered Kubernetes manifests ask for."""

    pvc_name: str = Field(default="baseliner-shared-pkgs", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    storage_class: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    cache_size: str = Field(default="50Gi", pattern=r"^[0-9]+(Ki|Mi|Gi|Ti)$")
    cpu: str = Field(default="1", pattern=r"^[0-9]+(\.[0-9]+)?m?$")
    memory: str = Field(default="4Gi", pattern=r"^[0-9]+(Ki|Mi|Gi|Ti)$")


class OrgConfig(StrictModel):
    schema_version: Literal[1] = 1
    channel_mirrors: dict[str, str] = Field(default_factory=dict)
    pip_index_url: str | None = Field(default=None, pattern=CHANNEL_RE)
    pip_mirror: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_./@%+~-]+$")  # a directory
    package_cache: str = "build/pkgs"
    dist: str = "dist"
    store: str = "dist/store"
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    # Overlay locks (paths) whose delta packages the shared cache also holds.
    cache_overlays: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Project:
    """A baselines repo: where specs, templates, rendered images and outputs live."""

    root: Path
    config: OrgConfig = field(default_factory=OrgConfig)

    @classmethod
    def load(cls, root: Path | str = ".") -> Project:
        root = Path(root).resolve()
        path = root / CONFIG_NAME
        if not path.is_file():
            return cls(root)
        config: OrgConfig = validate_model(OrgConfig, read_source(path), "org config", CONFIG_NAME)
        return cls(root, config)

    def _path(self, value: str) -> Path:
        return (self.root / value).resolve()

    @property
    def baselines_dir(self) -> Path:
        return self.root / "baselines"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    # Every path under build/ and dist/ is named here, once.
    @property
    def locks_dir(self) -> Path:
        """Build locks (`concurrency.hold`), one file per baseline build or overlay build."""
        return self.build_dir / "locks"

    @property
    def envs_dir(self) -> Path:
        return self.build_dir / "envs"

    @property
    def bases_dir(self) -> Path:
        """Lock files of published bases, fetched for overlays."""
        return self.build_dir / "bases"

    @property
    def shared_cache(self) -> Path:
        """The default shared package cache that `invoke cache` fills."""
        return self.build_dir / "shared-pkgs"

    @property
    def local_channel_dir(self) -> Path:
        return self.build_dir / "local-channel"

    @property
    def org_channel_work(self) -> Path:
        """The org channel's wheels and conversions (a cache, by wheel sha256)."""
        return self.build_dir / "org-channel"

    @property
    def uv_cache(self) -> Path:
        """uv's cache for pip sections, beside the package cache (hardlinks need one filesystem)."""
        return self.package_cache.parent / "uv-cache"

    @property
    def overlays_dist(self) -> Path:
        return self.dist_dir / "overlays"

    @property
    def package_cache(self) -> Path:
        return self._path(self.config.package_cache)

    @property
    def dist_dir(self) -> Path:
        return self._path(self.config.dist)

    @property
    def store_location(self) -> str:
        """The artifact store: an http(s) URL as given, or a directory relative to the config."""
        value = self.config.store
        return value if "://" in value else str(self._path(value))

    @property
    def cache_overlay_locks(self) -> list[Path]:
        return [self._path(p) for p in self.config.cache_overlays]

    def repo(self) -> BaselineRepo:
        return BaselineRepo(self.baselines_dir)

    def channel_dir(self, url: str) -> Path:
        """The directory a channel (by canonical URL or name) is mirrored to, for building it."""
        from .errors import ConfigError

        target = self.mirrors().get(url.rstrip("/"))
        if target is None or not target.startswith("file://"):
            raise ConfigError(
                f"channel {url!r} has no mirror directory in {CONFIG_NAME}",
                hint=f"add `channel_mirrors: {{{url}: build/channel}}` to {CONFIG_NAME}",
            )
        return Path(urllib.parse.unquote(target.removeprefix("file://")))

    @property
    def pip_mirror_dir(self) -> Path | None:
        """The org's PyPI mirror on disk, that `invoke channel` writes (None: the config has none)."""
        return self._path(self.config.pip_mirror) if self.config.pip_mirror else None

    @property
    def pip_index(self) -> str | None:
        """The index pip sections lock and install from: the org's mirror when the config names
        one, else `pip_index_url` (None: PyPI)."""
        mirror = self.pip_mirror_dir
        return mirror.as_uri() if mirror is not None else self.config.pip_index_url

    def mirrors(self) -> dict[str, str]:
        """Channel name -> URL, with directories turned into absolute file:// URLs."""
        out = {}
        for name, target in self.config.channel_mirrors.items():
            if "://" in target:
                out[name] = target.rstrip("/")
            else:
                out[name] = self._path(target).as_uri()
        return out
