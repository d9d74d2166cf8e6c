"""Ten overlays on one base vs ten self-contained baselines, measured in one run (not a test).

Prints:
  * registry bytes: the base + ten overlay images pushed to one registry vs ten self-contained
    images pushed to another (bytes of each registry's storage on disk);
  * disk: the ten overlay environments (hardlinks counted once) vs ten independent environments
    (each unpacked from its own full tarball);
  * build time: an overlay build (lock + env + tarballs + image) vs a full baseline build.

Needs `make demo` first (seeded channel, demo built and published, Docker Engine) and PyPI for the
ten small pip packages the overlays add. Run: .venv/bin/python bench/overlays.py [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from baseliner import images
from baseliner.build import BuildOptions, build_baseline
from baseliner.config import Project
from baseliner.overlay import load_overlay, lock_overlay, resolve_base
from baseliner.overlay_build import build_overlay
from baseliner.pack import unpack
from baseliner.store import Store

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ["six", "idna", "attrs", "tqdm", "click", "toolz", "certifi", "packaging", "wrapt", "zipp"]


def unique_bytes(roots: list[Path]) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in filenames + dirnames:
                st = os.lstat(os.path.join(dirpath, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


def start_registry(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = data.with_suffix(".yml")
    config.write_text(
        f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(1.5)
    return proc, f"127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the measured figures as one JSON object")
    args = parser.parse_args()
    demo_project = Project.load(ROOT)
    store = Store(demo_project.store_location)
    demo = yaml.safe_load((ROOT / "baselines" / "demo.yaml").read_text())
    client = images.connect()
    work = Path(tempfile.mkdtemp(prefix="bench-overlays-", dir=demo_project.build_dir))
    procs = []
    try:
        overlay_times, full_times, overlay_envs, full_envs, overlay_tags, full_tags = [], [], [], [], [], []
        # self-contained baselines: the demo spec plus one package, in a repo of their own
        full_repo = work / "full"
        (full_repo / "baselines").mkdir(parents=True)
        (full_repo / "baseliner.yaml").write_text(
            f"schema_version: 1\nchannel_mirrors:\n  https://conda.example.org/org: {ROOT / 'build' / 'channel'}\n"
            f"package_cache: {ROOT / 'build' / 'pkgs'}\n"
        )
        for i, extra in enumerate(EXTRAS):
            name = f"full-{i}"
            spec = {**demo, "name": name, "pip": [*demo["pip"], extra]}
            (full_repo / "baselines" / f"{name}.yaml").write_text(yaml.safe_dump(spec))
        full_project = Project.load(full_repo)
        for i, extra in enumerate(EXTRAS):
            start = time.perf_counter()
            result = build_baseline(full_project, f"full-{i}", BuildOptions(image=True))
            full_times.append(time.perf_counter() - start)
            full_tags.append(result.image_tags[0])
            full_envs.append(unpack(result.tarball, work / "independent" / f"env-{i}"))
            # overlays: the same package as a delta on the published demo
            proj = work / f"proj-{i}"
            proj.mkdir()
            config = yaml.safe_load(
                (ROOT / "examples/proj-nlp/baseliner.yaml").read_text().replace("../../", f"{ROOT}/")
            )
            config.pop("pip_mirror", None)  # the ten extras come from PyPI, as the full baselines' do
            (proj / "baseliner.yaml").write_text(yaml.safe_dump(config))
            (proj / "overlay.yaml").write_text(
                yaml.safe_dump(
                    {
                        "schema_version": 1,
                        "name": f"ovl-{i}",
                        "extends": f"demo@{demo['version']}",
                        "pip": [extra],
                    }
                )
            )
            project = Project.load(proj)
            start = time.perf_counter()
            overlay = load_overlay(proj / "overlay.yaml")
            base = resolve_base(overlay, store, proj / "build" / "bases")
            lock_overlay(overlay, base, project.mirrors(), project.build_dir, project.pip_index)
            built = build_overlay(project, overlay, base, BuildOptions(), connect=lambda: client)
            (tag,) = built.image_tags
            overlay_times.append(time.perf_counter() - start)
            overlay_tags.append(tag)
            overlay_envs.append(built.env)
        # registry bytes
        reg_ov, reg_full = work / "reg-overlays", work / "reg-full"
        p1, addr_ov = start_registry(reg_ov)
        p2, addr_full = start_registry(reg_full)
        procs += [p1, p2]
        base_tag = store.manifest("demo", demo["version"])["image"]["tags"][0]
        images.push(client, base_tag, f"{addr_ov}/org/demo", "base")
        for i, tag in enumerate(overlay_tags):
            images.push(client, tag, f"{addr_ov}/org/ovl-{i}", "1")
        for i, tag in enumerate(full_tags):
            images.push(client, tag, f"{addr_full}/org/full-{i}", "1")
        ov_reg, full_reg = unique_bytes([reg_ov]), unique_bytes([reg_full])
        ov_disk, full_disk = unique_bytes(overlay_envs), unique_bytes(full_envs)
        shared = unique_bytes([ROOT / "build" / "pkgs"])
        ov_t = sum(overlay_times) / len(overlay_times)
        full_t = sum(full_times) / len(full_times)
        if args.json:
            figures = {
                "overlay_registry_bytes_ratio": round(ov_reg / full_reg, 4),
                "overlay_registry_bytes": ov_reg,
                "self_contained_registry_bytes": full_reg,
                "overlay_env_disk_ratio": round(ov_disk / full_disk, 4),
                "overlay_build_time_vs_full": round(ov_t / full_t, 4),
                "overlays": len(overlay_tags),
            }
            print(json.dumps(figures))
            return
        print(
            f"baseliner overlay benchmark — 10 overlays on demo@{demo['version']} (one small pip package each)"
        )
        print(
            f"registry bytes   overlays (base once + 10 deltas) {ov_reg / 1e6:8.1f} MB   self-contained x10 {full_reg / 1e6:8.1f} MB   ratio {ov_reg / full_reg:.3f}"
        )
        print(
            f"env disk         overlays (hardlinks once)        {ov_disk / 1e6:8.1f} MB   independent x10    {full_disk / 1e6:8.1f} MB   ratio {ov_disk / full_disk:.3f}"
            f"   (+ shared package cache {shared / 1e6:.1f} MB, held once for every env)"
        )
        print(
            f"build time       overlay (lock+env+tars+image)    {ov_t:8.2f} s    full baseline build {full_t:8.2f} s    ratio {ov_t / full_t:.3f}"
        )
    finally:
        for proc in procs:
            proc.terminate()
        for tag in [*locals().get("overlay_tags", []), *locals().get("full_tags", [])]:
            with contextlib.suppress(Exception):
                client.images.remove(tag, force=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
