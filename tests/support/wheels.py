"""Tiny real wheels and a PEP 503 index for them, so pip sections resolve offline."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(
    out_dir: Path,
    name: str,
    version: str,
    files: dict[str, str],
    requires: tuple[str, ...] = (),
    entry_points: str | None = None,
) -> Path:
    """A pure-python wheel holding `files` (path -> text)."""
    norm = name.replace("-", "_")
    dist_info = f"{norm}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    contents = {path: text.encode() for path, text in files.items()}
    if entry_points:
        contents[f"{dist_info}/entry_points.txt"] = entry_points.encode()
    contents[f"{dist_info}/METADATA"] = ("\n".join(meta) + "\n").encode()
    contents[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: baseliner-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in contents.items())
    contents[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{norm}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path in sorted(contents):
            zi = zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0))
            zf.writestr(zi, contents[path])
    return wheel


def build_index(root: Path) -> Path:
    """A PEP 503 simple index under root/simple for the wheels in root/wheels."""
    wheels = sorted((root / "wheels").glob("*.whl"))
    simple = root / "simple"
    projects: dict[str, list[Path]] = {}
    for wheel in wheels:
        projects.setdefault(wheel.name.split("-")[0].replace("_", "-").lower(), []).append(wheel)
    for project, files in projects.items():
        d = simple / project
        d.mkdir(parents=True, exist_ok=True)
        links = "".join(
            f'<a href="../../wheels/{w.name}#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}">{w.name}</a>\n'
            for w in files
        )
        (d / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    (simple / "index.html").write_text(
        "<html><body>\n" + "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(projects)) + "</body></html>\n"
    )
    return simple


def build_fixture_wheels(root: Path) -> Path:
    """`tinyutil` (with a console script), `tinyapp` (requires it), and two troublemakers:
    `clobber` overwrites a file of the conda package hello-noarch; the pip `hello-noarch`
    shadows the conda package of that name."""
    wheels = root / "wheels"
    build_wheel(
        wheels,
        "tinyutil",
        "1.2.0",
        {"tinyutil/__init__.py": "VALUE = 42\n\ndef main():\n    print(VALUE)\n    return 0\n"},
        entry_points="[console_scripts]\ntinyutil = tinyutil:main\n",
    )
    build_wheel(wheels, "clobber", "1.0", {"hello_noarch/__init__.py": "def main():\n    return 1\n"})
    build_wheel(wheels, "hello-noarch", "9.0", {"hello_noarch_pip/__init__.py": "X = 9\n"})
    build_wheel(
        wheels,
        "tinyapp",
        "0.5.0",
        {"tinyapp/__init__.py": "import tinyutil\nANSWER = tinyutil.VALUE\n"},
        requires=("tinyutil>=1",),
    )
    # Needs a tinyutil that no conda package of the tests provides.
    build_wheel(
        wheels, "needs-newer-util", "1.0", {"needs_newer_util/__init__.py": ""}, requires=("tinyutil>=2",)
    )
    return build_index(root)
