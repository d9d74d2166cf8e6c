"""Audit benchmark, measured in one run (a script, not a test). Prints:

  * clustering 100,000 synthetic environments of ~300 packages (MinHash-LSH, checked exactly):
    seconds and the peak RSS of a fresh process that builds the fleet and clusters it;
  * at 10,000: the scalable method vs the exact matrix product, time and identical clusters;
  * at 2,000: the exact method vs Python sets over all pairs (same pairs);
  * scan rate (inventory + inode-exact disk count) vs a bare `os.scandir` + `lstat` walk of the
    same tree of real prefixes (conda-meta records, files hardlinked from one cache).

Run: .venv/bin/python bench/audit.py [--json] [--envs 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

from baseliner.audit import similarity
from baseliner.audit.report import scan

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support.synthetic import synthetic  # noqa: E402


def naive(envs: list[list[str]], threshold: float) -> int:
    sets = [set(e) for e in envs]
    found = 0
    for a, b in combinations(range(len(sets)), 2):
        inter = len(sets[a] & sets[b])
        if inter / (len(sets[a]) + len(sets[b]) - inter) >= threshold:
            found += 1
    return found


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


def clustered_in_fresh_process(n: int) -> dict[str, float]:
    """Time and peak RSS of clustering n envs, in a new interpreter (peak RSS is per process)."""
    code = (
        "import json, resource, sys, time;"
        "from tests.support.synthetic import synthetic; from baseliner.audit import similarity;"
        f"envs = synthetic({n}); base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024;"
        "t = time.perf_counter(); c = similarity.cluster(envs, 0.9); t = time.perf_counter() - t;"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024;"
        "print(json.dumps({'seconds': t, 'peak_rss_mb': peak, 'input_rss_mb': base,"
        " 'clusters': len(c.members()), 'method': c.method}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the measured figures as one JSON object")
    parser.add_argument("--envs", type=int, default=100_000, help="fleet size for the large run")
    args = parser.parse_args()
    big = clustered_in_fresh_process(args.envs)

    envs = synthetic(10_000)
    start = time.perf_counter()
    exact = similarity.cluster_exact(envs, 0.9)
    t_exact = time.perf_counter() - start
    start = time.perf_counter()
    scalable = similarity.cluster_lsh(envs, 0.9)
    t_lsh = time.perf_counter() - start
    same = exact.members() == scalable.members()

    small = envs[:2000]
    start = time.perf_counter()
    pairs, _ = similarity.jaccard_pairs(similarity.token_matrix(small), 0.9)
    t_matrix = time.perf_counter() - start
    start = time.perf_counter()
    naive_pairs = naive(small, 0.9)
    t_naive = time.perf_counter() - start
    assert naive_pairs == len(pairs), (naive_pairs, len(pairs))

    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        root = Path(tmp)
        make_tree(root)
        start = time.perf_counter()
        entries = bare_walk(root)
        t_walk = time.perf_counter() - start
        start = time.perf_counter()
        profiles, _ = scan([root / "envs"], caches=[root / "pkgs"])  # what `invoke audit` runs
        t_scan = time.perf_counter() - start
        shutil.rmtree(root, ignore_errors=True)

    figures = {
        "audit_100k_seconds": round(big["seconds"], 2),
        "audit_100k_peak_rss_mb": round(big["peak_rss_mb"], 1),
        "audit_100k_input_rss_mb": round(big["input_rss_mb"], 1),
        "audit_100k_envs": args.envs,
        "audit_100k_clusters": big["clusters"],
        "audit_10k_lsh_vs_exact_time": round(t_lsh / t_exact, 3),
        "audit_10k_same_clusters": same,
        "audit_2k_matrix_vs_python_sets_time": round(t_matrix / t_naive, 4),
        "audit_scan_vs_walk": round(t_scan / t_walk, 3),
        "scan_entries": entries,
        "scan_prefixes": len(profiles),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print("baseliner audit benchmark")
    print(
        f"cluster {args.envs:,} envs x ~300 pkgs ({big['method']})   {big['seconds']:.1f} s, {big['clusters']} clusters, "
        f"peak RSS {big['peak_rss_mb']:.0f} MB ({big['input_rss_mb']:.0f} MB of it the fleet itself)"
    )
    print(
        f"10,000 envs: MinHash-LSH {t_lsh:.2f} s vs exact matrix product {t_exact:.2f} s "
        f"({t_lsh / t_exact:.2f}x), clusters identical: {same}"
    )
    print(
        f"2,000 envs: matrix {t_matrix:.2f} s vs Python sets over all pairs {t_naive:.2f} s (same {naive_pairs} pairs)"
    )
    print(
        f"scan {len(profiles)} prefixes, {entries} entries: inventory+disk {t_scan:.2f} s vs bare scandir+lstat "
        f"{t_walk:.2f} s   ratio {t_scan / t_walk:.2f}x"
    )


if __name__ == "__main__":
    main()
