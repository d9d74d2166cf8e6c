"""Audit benchmark, measured in one run (a script, not a test). Prints:

  * clustering time and peak memory for 10,000 synthetic environments of ~300 packages;
  * the speed-up over the naive pairwise comparison (Python sets over all pairs) at 2,000;
  * scan rate (inventory + inode-exact disk count) vs a bare `os.scandir` + `lstat` walk of the
    same tree of real prefixes (conda-meta records, files hardlinked from one cache).

Run: .venv/bin/python bench/audit.py
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import tempfile
import time
from itertools import combinations
from pathlib import Path

from baseliner.audit import disk, similarity
from baseliner.audit.inventory import inventory


def synthetic(n: int, seed: int = 7) -> list[list[str]]:
    rng = random.Random(seed)
    names = [f"pkg{i}" for i in range(3000)]
    templates = [rng.sample(names, 300) for _ in range(60)]
    envs = []
    for _ in range(n):
        base = templates[rng.randrange(len(templates))]
        tokens = [f"conda:{p}=={1 if rng.random() > 0.03 else rng.randint(2, 4)}.0" for p in base]
        tokens += [f"pip:{rng.choice(names)}==1.0" for _ in range(rng.randint(0, 8))]
        envs.append(tokens)
    return envs


def naive(envs: list[list[str]], threshold: float) -> int:
    sets = [set(e) for e in envs]
    found = 0
    for a, b in combinations(range(len(sets)), 2):
        inter = len(sets[a] & sets[b])
        if inter / (len(sets[a]) + len(sets[b]) - inter) >= threshold:
            found += 1
    return found


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_walk(root: Path) -> int:
    count = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                entry.stat(follow_symlinks=False)
                count += 1
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return count


def make_tree(root: Path, envs: int = 200, packages: int = 60, files: int = 25) -> None:
    cache = root / "pkgs"
    for p in range(packages * 2):
        for f in range(files):
            path = cache / f"pkg{p}-1.0-0" / "lib" / f"f{f}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x" * 512)
    rng = random.Random(3)
    for e in range(envs):
        prefix = root / "envs" / f"env{e}"
        (prefix / "conda-meta").mkdir(parents=True)
        for p in rng.sample(range(packages * 2), packages):
            rels = [f"lib/f{f}-{p}.py" for f in range(files)]
            for f, rel in enumerate(rels):
                (prefix / rel).parent.mkdir(parents=True, exist_ok=True)
                os.link(cache / f"pkg{p}-1.0-0" / "lib" / f"f{f}.py", prefix / rel)
            record = {
                "name": f"pkg{p}",
                "version": "1.0",
                "build": "0",
                "channel": "https://conda.anaconda.org/conda-forge/linux-64",
                "files": rels,
                "paths_data": {"paths": [{"_path": r, "size_in_bytes": 512} for r in rels]},
            }
            (prefix / "conda-meta" / f"pkg{p}-1.0-0.json").write_text(json.dumps(record))


def main() -> None:
    envs = synthetic(10_000)
    before = rss_mb()
    start = time.perf_counter()
    result = similarity.cluster(envs, 0.9)
    t10k = time.perf_counter() - start
    peak = rss_mb()
    print("baseliner audit benchmark")
    print(
        f"cluster 10,000 envs x ~300 pkgs   {t10k:7.2f} s   {len(result.members())} clusters, {len(result.pairs)} pairs >= 0.9, "
        f"peak RSS {peak:.0f} MB (+{peak - before:.0f} MB for clustering)"
    )
    small = envs[:2000]
    start = time.perf_counter()
    ours = similarity.cluster(small, 0.9)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    pairs = naive(small, 0.9)
    t_naive = time.perf_counter() - start
    assert pairs == len(ours.pairs), (pairs, len(ours.pairs))
    print(
        f"2,000 envs: matrix {t_ours:.2f} s vs Python sets over all pairs {t_naive:.2f} s   speed-up {t_naive / t_ours:.0f}x (same {pairs} pairs)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        root = Path(tmp)
        make_tree(root)
        start = time.perf_counter()
        entries = bare_walk(root)
        t_walk = time.perf_counter() - start
        start = time.perf_counter()
        profiles = inventory([root / "envs"])
        usage = disk.measure([Path(p.location) for p in profiles] + [root / "pkgs"])
        t_scan = time.perf_counter() - start
        print(
            f"scan {len(profiles)} prefixes, {entries} entries: inventory+disk {t_scan:.2f} s ({entries / t_scan:,.0f} entries/s) "
            f"vs bare scandir+lstat {t_walk:.2f} s ({entries / t_walk:,.0f}/s)   ratio {t_scan / t_walk:.1f}x; "
            f"disk total {usage.total / 1e6:.1f} MB"
        )
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
