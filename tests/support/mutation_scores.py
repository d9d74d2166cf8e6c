"""Per-module mutation scores from mutmut's results (run by `make mutation`): killed, survived,
timed out and not reached by the fast tests, and the score (killed + timed out) / (killed +
survived + timed out). A timeout is a detected mutant: the tests did not pass (the mutant loops,
e.g. a read that never reaches the end of the file). Mutants no selected test reaches are counted
apart: the slower suite covers them, and they are not part of the score. Arguments, if any, are the
patterns `mutmut run` was given (`baseliner.lint*0`): only the mutants they name are counted."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path


def main() -> None:
    patterns = sys.argv[1:]
    out = subprocess.run(
        [str(Path(sys.executable).with_name("mutmut")), "results", "--all", "true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if "__mutmut_" not in name or (patterns and not any(fnmatch.fnmatch(name, p) for p in patterns)):
            continue
        module = ".".join(part for part in name.split("__mutmut_")[0].split(".")[:-1])
        counts[module][status] += 1
    print(f"{'module':28} {'killed':>7} {'survived':>8} {'timeout':>7} {'no tests':>8} {'score':>6}")
    for module, c in sorted(counts.items()):
        tested = c["killed"] + c["survived"] + c["timeout"]
        score = f"{100 * (c['killed'] + c['timeout']) / tested:.0f}%" if tested else "-"
        print(f"{module:28} {c['killed']:7} {c['survived']:8} {c['timeout']:7} {c['no tests']:8} {score:>6}")


if __name__ == "__main__":
    main()
