"""A synthetic fleet of real conda prefixes (conda-meta records, files hardlinked from one package
cache, pip dist-info), with planted problems for the audit to find."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

DAY = 86400


@dataclass(frozen=True)
class Pkg:
    name: str
    version: str
    build: str
    channel: str = "conda-forge"
    files: int = 3
    size: int = 4096

    @property
    def dist(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"


PYTHON = Pkg("python", "3.11.7", "h0_cpython", files=6, size=64_000)
NUMPY = Pkg("numpy", "1.26.4", "py311_openblas", size=32_000)
NUMPY_MKL = Pkg("numpy", "1.26.4", "py311_mkl", size=32_000)
PANDAS = Pkg("pandas", "2.2.0", "py311_0", size=24_000)
SCIPY = Pkg("scipy", "1.12.0", "py311_0", size=24_000)
MPL = Pkg("matplotlib", "3.8.2", "py311_0")
REQUESTS_CF = Pkg("requests", "2.31.0", "pyhd8ed1ab_0")
REQUESTS_DEF = Pkg("requests", "2.31.0", "pyhd8ed1ab_0", channel="pkgs/main")
SEABORN = Pkg("seaborn", "0.13.2", "pyhd8ed1ab_0")
TQDM = Pkg("tqdm", "4.66.1", "pyhd8ed1ab_0")
RBASE = Pkg("r-base", "4.3.2", "h0_0", channel="r", size=80_000)
RGG = Pkg("r-ggplot2", "3.4.4", "r43_0", channel="r")
BASE = [PYTHON, NUMPY, PANDAS, SCIPY, MPL, SEABORN]

# name -> (packages, pip dists, days since last use)
FLEET: dict[str, tuple[list[Pkg], list[tuple[str, str]], int]] = {
    "proj-alpha": ([*BASE, REQUESTS_CF], [], 1),
    "proj-beta": ([*BASE, REQUESTS_CF], [], 2),
    "proj-gamma": ([*BASE, REQUESTS_CF], [], 3),
    "exp-mkl": ([PYTHON, NUMPY_MKL, PANDAS, SCIPY, MPL, SEABORN, REQUESTS_CF], [], 4),  # build split
    "final_v2": ([*BASE, REQUESTS_DEF], [], 5),  # channel mix + bad name
    "exp-old": ([*BASE, REQUESTS_CF, TQDM], [], 200),  # stale
    "tool-shadow": ([PYTHON, NUMPY, TQDM], [("numpy", "2.0.1"), ("rich", "13.7.0")], 6),  # pip shadows conda
    "tool-r": ([RBASE, RGG], [], 7),
}


def _write_package(cache: Path, pkg: Pkg) -> None:
    root = cache / pkg.dist
    if root.exists():
        return
    for i in range(pkg.files):
        path = root / "lib" / pkg.name / f"file{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(pkg.size // pkg.files))


def build_fleet(root: Path) -> tuple[Path, Path]:
    """Write the fleet under root/envs and its package cache under root/pkgs; returns both."""
    cache, envs = root / "pkgs", root / "envs"
    now = time.time()
    for name, (packages, pips, idle_days) in FLEET.items():
        prefix = envs / name
        (prefix / "conda-meta").mkdir(parents=True)
        for pkg in packages:
            _write_package(cache, pkg)
            files = []
            for src in sorted((cache / pkg.dist).rglob("*")):
                if src.is_file():
                    rel = src.relative_to(cache / pkg.dist).as_posix()
                    dst = prefix / rel
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.link(src, dst)
                    files.append(rel)
            record = {
                "name": pkg.name,
                "version": pkg.version,
                "build": pkg.build,
                "channel": f"https://conda.anaconda.org/{pkg.channel}/linux-64",
                "files": files,
                "paths_data": {
                    "paths_version": 1,
                    "paths": [
                        {"_path": f, "path_type": "hardlink", "size_in_bytes": (prefix / f).stat().st_size}
                        for f in files
                    ],
                },
            }
            (prefix / "conda-meta" / f"{pkg.dist}.json").write_text(json.dumps(record))
        site = prefix / "lib" / "python3.11" / "site-packages"
        for dist, version in pips:
            info = site / f"{dist}-{version}.dist-info"
            info.mkdir(parents=True)
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
            (info / "INSTALLER").write_text("pip\n")
            (site / dist).mkdir(exist_ok=True)
            (site / dist / "__init__.py").write_text("X = 1\n" * 200)
            (info / "RECORD").write_text(f"{dist}/__init__.py,,\n{info.name}/METADATA,,\n")
        (prefix / "bin").mkdir(exist_ok=True)
        (prefix / "bin" / "python").write_text("#!/bin/sh\n")
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now - (idle_days + 30) * DAY))
        (prefix / "conda-meta" / "history").write_text(f"==> {created} <==\n# cmd: conda create -n {name}\n")
        stamp = now - idle_days * DAY
        for path in (prefix / "bin" / "python", prefix / "conda-meta" / "history", prefix):
            os.utime(path, (stamp, stamp))
    return envs, cache
