"""`export-env`: write an existing environment down so an experiment can be committed and rerun.

From the prefix's conda-meta and pip metadata: `environment.yml` (channels, `name=version=build`,
a `pip:` section), conda's `@EXPLICIT` file (dependencies first, `URL#md5`) and a pip lock
(`name==version`; the wheels' own hashes are not recorded in an installed environment).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..atomic import write_atomic
from ..envs import conda_records
from ..errors import EnvError
from .inventory import scan_prefix


def export_env(prefix: Path, out_dir: Path) -> list[Path]:
    """Write environment.yml, the @EXPLICIT file and the pip lock of the env at `prefix` into `out_dir`."""
    from ..engine import prefix_records, topological

    if not (prefix / "conda-meta").is_dir():
        raise EnvError(
            f"{prefix} is not a conda environment (no conda-meta)", hint="pass the environment's prefix"
        )
    profile = scan_prefix(prefix)
    records = prefix_records(prefix)
    by_name = {str(r.name.normalized): r for r in records}
    ordered = [by_name[str(r.name.normalized)] for r in topological(records)]
    header = f"# exported by baseliner from {prefix} — `baseliner export-env {prefix}` regenerates it\n"
    explicit = [header.rstrip("\n"), "@EXPLICIT"]
    for record in ordered:
        md5 = f"#{record.md5.hex()}" if record.md5 else ""
        explicit.append(f"{record.url}{md5}")
    raw = {str(r["name"]): r for r in conda_records(prefix)}
    channels = list(dict.fromkeys(c for c in profile.channels if c))
    dependencies: list[object] = [f"{n}={raw[n]['version']}={raw[n]['build']}" for n in sorted(raw)]
    pins = sorted(f"{p.name}=={p.version}" for p in profile.pip)
    if pins:
        dependencies.append({"pip": pins})
    env = {"name": prefix.name, "channels": [*channels, "nodefaults"], "dependencies": dependencies}
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "environment.yml": header + yaml.safe_dump(env, sort_keys=False),
        "explicit.txt": "\n".join(explicit) + "\n",
        "requirements.lock.txt": header + "".join(f"{p}\n" for p in pins),
    }
    written = []
    for name, text in files.items():
        written.append(write_atomic(out_dir / name, text))
    return written
