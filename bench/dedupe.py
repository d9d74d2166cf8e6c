"""`dedupe` vs `jdupes -L` on the same fleet, and `consolidate` on a third copy of it, in one run
(a script, not a test).

The fleet: copies of the realistic `demo` environment (120+ conda packages, as `make demo`
builds it) made the way servers get them (`cp -a`, so no file is shared with the cache or with
another copy), one file changed by hand in one of them, and a copy of the package cache they came
from. The fleet is copied once more, so each tool gets its own identical fleet. Then:

* ours: `baseliner dedupe --root ENVS --cache PKGS --yes`;
* jdupes: `jdupes -r -L -q ENVS PKGS` (hardlink every set of identical files).

* consolidate: `baseliner consolidate --cluster 0 --root ENVS --cache PKGS --yes`, then
  `--finish`; its bytes freed against the audit's prediction.

Bytes freed are `du -sb` before minus after. jdupes' freed inodes are sorted by what baseliner
knows about them: safe to link (every path a recorded, unchanged, non-placeholder file), or not,
and why (rewritten for its prefix, changed since install, recorded by no package). Goal: ours
frees at least as many bytes as jdupes among the safe ones.

Run: make demo, then .venv/bin/python bench/dedupe.py [--copies N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from baseliner.audit.dedupe import records
from baseliner.pack import sha256_file

REPO = Path(__file__).resolve().parents[1]
BASELINER = str(Path(sys.executable).with_name("baseliner"))


# Why a file jdupes linked is not safe to link, most specific first.
REASONS = [
    "rewritten for its prefix",
    "changed since install",
    "recorded by no package",
    "its paths now have another owner or mode",
    "linked onto a file that is not safe to link (e.g. one no package records)",
]


def du(*trees: Path) -> int:
    out = subprocess.run(["du", "-sbc", *map(str, trees)], capture_output=True, text=True, check=True)
    return int(out.stdout.splitlines()[-1].split()[0])


def inodes(*trees: Path) -> dict[tuple[int, int], tuple[int, tuple[int, int, int], list[str]]]:
    """Every regular file's inode: its size, (uid, gid, mode) and paths."""
    out: dict[tuple[int, int], tuple[int, tuple[int, int, int], list[str]]] = {}
    for tree in trees:
        for dirpath, _, names in os.walk(tree):
            for name in names:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                if not os.path.islink(path):
                    owner = (st.st_uid, st.st_gid, st.st_mode & 0o7777)
                    out.setdefault((st.st_dev, st.st_ino), (st.st_size, owner, []))[2].append(path)
    return out


def make_fleet(root: Path, env: Path, cache: Path, copies: int) -> tuple[Path, Path]:
    envs, pkgs = root / "envs", root / "pkgs"
    envs.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(cache), str(pkgs)], check=True)
    for n in range(copies):
        subprocess.run(["cp", "-a", str(env), str(envs / f"proj-{n}")], check=True)
    changed = next((envs / "proj-0").glob("lib/python*/site-packages/numpy/__init__.py"))
    changed.write_text(changed.read_text() + "# patched on the server\n")
    return envs, pkgs


def classify(envs: Path, pkgs: Path) -> dict[str, str]:
    """Each file path: "safe" (recorded, unchanged, no placeholder), or why not."""
    found = records([envs], [], [pkgs])
    why: dict[str, str] = {}
    for path, _ in found.placeholders:
        why[str(path)] = "rewritten for its prefix"
    for candidate in found.candidates:
        path = str(candidate.path)
        try:
            same = os.path.getsize(path) == candidate.size and sha256_file(candidate.path) == candidate.sha256
        except OSError:
            continue
        why[path] = "safe" if same else "changed since install"
    return why


def consolidate(envs: Path, pkgs: Path, out: Path) -> dict[str, float]:
    """`consolidate --yes` then `--finish` of the fleet's one cluster: bytes freed, measured."""
    before = du(envs, pkgs)
    start = time.perf_counter()
    args = ["--cluster", "0", "--root", str(envs), "--cache", str(pkgs), "--out", str(out)]
    done = subprocess.run(
        [BASELINER, "consolidate", *args, "--yes", "--json"], capture_output=True, text=True, check=True
    )
    subprocess.run(
        [BASELINER, "consolidate", "--root", str(envs), "--finish"], capture_output=True, check=True
    )
    seconds = time.perf_counter() - start
    freed = before - du(envs, pkgs)
    predicted = json.loads(done.stdout)["predicted_freed_bytes"]
    return {
        "consolidate_bytes_freed": freed,
        "consolidate_predicted_bytes": predicted,
        "consolidate_vs_prediction": round(freed / max(predicted, 1), 4),
        "consolidate_seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    env = next((REPO / "build" / "envs").glob("demo-*-linux-64"), None)
    cache = REPO / "build" / "pkgs"
    if env is None or not cache.is_dir() or shutil.which("jdupes") is None:
        sys.exit("needs the demo env (`make demo`) and jdupes (`apt-get install jdupes`)")
    with tempfile.TemporaryDirectory(prefix="bench-dedupe-", dir=REPO / "build") as tmp:
        ours_root, theirs_root = Path(tmp) / "ours", Path(tmp) / "jdupes"
        envs, pkgs = make_fleet(ours_root, env, cache, args.copies)
        subprocess.run(["cp", "-a", str(ours_root), str(theirs_root)], check=True)
        cons_root = Path(tmp) / "consolidate"
        subprocess.run(["cp", "-a", str(ours_root), str(cons_root)], check=True)
        j_envs, j_pkgs = theirs_root / "envs", theirs_root / "pkgs"
        fleet_bytes = du(envs, pkgs)

        before = du(envs, pkgs)
        start = time.perf_counter()
        out = subprocess.run(
            [BASELINER, "dedupe", "--root", str(envs), "--cache", str(pkgs), "--yes", "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        t_ours = time.perf_counter() - start
        ours = json.loads(out.stdout)
        freed_ours = before - du(envs, pkgs)

        why = classify(j_envs, j_pkgs)
        snapshot = inodes(j_envs, j_pkgs)
        before = du(j_envs, j_pkgs)
        start = time.perf_counter()
        subprocess.run(
            ["jdupes", "-r", "-L", "-q", str(j_envs), str(j_pkgs)], check=True, capture_output=True
        )
        t_jdupes = time.perf_counter() - start
        freed_jdupes = before - du(j_envs, j_pkgs)
        after = inodes(j_envs, j_pkgs)
        freed_by: dict[str, int] = defaultdict(int)
        for inode, (size, owner, paths) in snapshot.items():
            if inode in after:
                continue
            reasons = {why.get(p, "recorded by no package") for p in paths}
            now = os.lstat(paths[0])
            if (now.st_uid, now.st_gid, now.st_mode & 0o7777) != owner:
                reasons.add("its paths now have another owner or mode")
            kept = after.get((now.st_dev, now.st_ino))
            if kept and any(why.get(p) != "safe" for p in kept[2]):
                reasons.add("linked onto a file that is not safe to link (e.g. one no package records)")
            freed_by["safe" if reasons == {"safe"} else min(reasons - {"safe"}, key=REASONS.index)] += size
        consolidated = consolidate(cons_root / "envs", cons_root / "pkgs", Path(tmp) / "proposal")
    result = {
        **consolidated,
        "fleet_bytes": fleet_bytes,
        "copies": args.copies,
        "dedupe_freed_bytes": freed_ours,
        "dedupe_predicted_bytes": ours["predicted_freed_bytes"],
        "dedupe_seconds": round(t_ours, 2),
        "jdupes_freed_bytes": freed_jdupes,
        "jdupes_freed_by_kind": dict(freed_by),
        "jdupes_seconds": round(t_jdupes, 2),
        "dedupe_bytes_vs_jdupes": round(freed_ours / max(freed_by["safe"], 1), 4),
        "dedupe_bytes_vs_jdupes_all": round(freed_ours / max(freed_jdupes, 1), 4),
        "dedupe_time_vs_jdupes": round(t_ours / t_jdupes, 3),
        "dedupe_vs_prediction": round(freed_ours / max(ours["predicted_freed_bytes"], 1), 4),
    }
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    mb = 1e6
    print(f"fleet: {args.copies} copies of the demo env + its package cache, {fleet_bytes / mb:.0f} MB")
    print(
        f"baseliner dedupe  freed {freed_ours / mb:8.1f} MB in {t_ours:6.2f} s "
        f"(predicted {ours['predicted_freed_bytes'] / mb:.1f} MB)"
    )
    print(f"jdupes -L         freed {freed_jdupes / mb:8.1f} MB in {t_jdupes:6.2f} s, of which:")
    for kind, size in sorted(freed_by.items(), key=lambda kv: -kv[1]):
        print(f"    {size / mb:8.1f} MB  {kind}")
    print(
        f"baseliner consolidate freed {result['consolidate_bytes_freed'] / mb:8.1f} MB in "
        f"{result['consolidate_seconds']:6.2f} s (the audit predicted {result['consolidate_predicted_bytes'] / mb:.1f} MB)"
    )
    print(
        f"ratios: bytes vs jdupes' safe {result['dedupe_bytes_vs_jdupes']:.3f}x, "
        f"vs all it linked {result['dedupe_bytes_vs_jdupes_all']:.3f}x; time {result['dedupe_time_vs_jdupes']:.2f}x"
    )


if __name__ == "__main__":
    main()
