"""Package sets of a large synthetic fleet: 60 templates of 300 conda packages, each environment a
template with ~3 % of its versions changed and up to 8 pip extras (for clustering at scale)."""

from __future__ import annotations

import random
import sys


def synthetic(n: int, seed: int = 7) -> list[list[str]]:
    """`n` environments' tokens (`source:name==version`), interned as the audit's tokens are."""
    rng = random.Random(seed)
    names = [f"pkg{i}" for i in range(3000)]
    templates = [rng.sample(names, 300) for _ in range(60)]
    envs = []
    for _ in range(n):
        base = templates[rng.randrange(len(templates))]
        tokens = [f"conda:{p}=={1 if rng.random() > 0.03 else rng.randint(2, 4)}.0" for p in base]
        tokens += [f"pip:{rng.choice(names)}==1.0" for _ in range(rng.randint(0, 8))]
        envs.append([sys.intern(t) for t in tokens])
    return envs
