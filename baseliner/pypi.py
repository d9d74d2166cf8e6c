"""The boundary to uv and pip: resolving requirements to hashed pins, and downloading wheels.

Everything that runs uv or pip lives here, with the translation of their failures into our
errors. Two formats are read and written:

* a *pip lock* — `name==version` lines, each with every `--hash=sha256:…` of its distributions
  (what `uv pip compile --generate-hashes` writes); :func:`parse_pip_lock` is its one parser;
* the wheels of such a lock, downloaded with pip (`--require-hashes`: a wheel whose bytes are not
  pinned is refused, wherever it came from).

An index on disk (a `file://` URL: the org's PyPI mirror) is served to uv over loopback HTTP for
the length of the call. uv takes the files of a `file://` index for local files and writes, into
each dist-info it installs, when it first unpacked that file (`uv_cache.json`): an environment
would then differ by machine and by the age of uv's cache. Over HTTP they are an index's files,
installed as from any mirror; the port is derived from the directory, so that uv's cache, which
keys an index's files by its URL, stays warm from one build to the next.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ChannelError
from .pack import sha256_file

# Which interpreter tags uv resolves pip wheels for, per conda platform.
UV_PLATFORM = {
    "linux-64": "x86_64-manylinux_2_28",
    "linux-aarch64": "aarch64-manylinux_2_28",
    "osx-64": "x86_64-apple-darwin",
    "osx-arm64": "aarch64-apple-darwin",
    "win-64": "x86_64-pc-windows-msvc",
}


def _manylinux(arch: str, glibc_minor: int = 28) -> list[str]:
    """Every manylinux tag a glibc 2.`glibc_minor` machine runs (pip does not expand them)."""
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags = []
    for minor in range(glibc_minor, 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in legacy:
            tags.append(f"{legacy[minor]}_{arch}")
    return tags


# The wheel platform tags pip may download for a conda platform (glibc 2.28, as UV_PLATFORM).
PIP_PLATFORM = {"linux-64": _manylinux("x86_64"), "linux-aarch64": _manylinux("aarch64")}
DEFAULT_INDEX = "https://pypi.org/simple"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def normalise(name: str) -> str:
    """PEP 503 name normalisation, which also matches conda names of python packages."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    """One distribution of a pip lock: its normalised name, version and allowed sha256s."""

    name: str
    version: str
    hashes: tuple[str, ...]


@dataclass(frozen=True)
class Wheel:
    """A downloaded wheel and its sha256 (one of its pin's hashes)."""

    path: Path
    sha256: str


def parse_pip_lock(text: str) -> list[Pin]:
    """The pins of a pip lock (comments and blank lines skipped; continuation lines joined)."""
    pins: list[Pin] = []
    joined = re.sub(r"\\\n", " ", text)
    for line in joined.splitlines():
        line = line.strip()
        match = _PIN.match(line)
        if match:
            pins.append(Pin(normalise(match.group(1)), match.group(2), tuple(_HASH.findall(line))))
    return pins


class ResolveFailed(Exception):
    """uv could not resolve; `lines` are the last lines of what it said."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines

    def mentions(self, name: str) -> bool:
        """Whether uv's message names the distribution `name` (a possible cause)."""
        return re.search(rf"\b{re.escape(name)}\b", "\n".join(self.lines).lower()) is not None


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _port_of(root: str) -> int:
    """A port of the unprivileged range below Linux's ephemeral one, the same for one directory."""
    return 20000 + int(hashlib.sha256(root.encode()).hexdigest()[:8], 16) % 12000


@contextlib.contextmanager
def _uv_index(index_url: str | None) -> Iterator[tuple[str | None, dict[str, str]]]:
    """The index URL to hand uv, and the environment to run it in: a `file://` index is served on
    127.0.0.1 (and kept out of any proxy) until the block ends; any other URL is passed on."""
    env = {**os.environ, "UV_NO_PROGRESS": "1", "VIRTUAL_ENV": ""}
    if not index_url or not index_url.startswith("file://"):
        yield index_url, env
        return
    root = urllib.parse.unquote(urllib.parse.urlparse(index_url).path)
    handler = functools.partial(_QuietFiles, directory=root)
    try:  # uv caches an index's files by its URL: the same port for the same mirror keeps them
        server = http.server.ThreadingHTTPServer(("127.0.0.1", _port_of(root)), handler)
    except OSError:  # taken (another build serving it now): any port, and uv fetches anew
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # shutdown() waits for the loop to look: every 20 ms, not the default half second
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="pip-mirror", daemon=True)
    thread.start()
    no_proxy = ",".join(p for p in (env.get("NO_PROXY") or env.get("no_proxy"), "127.0.0.1") if p)
    try:
        yield (
            f"http://127.0.0.1:{server.server_address[1]}/",
            {**env, "NO_PROXY": no_proxy, "no_proxy": no_proxy},
        )
    finally:
        server.shutdown()
        server.server_close()


def install_locked(pip_lock: Path, python: Path, index_url: str | None, cache: Path) -> None:
    """Install a pip lock into the environment of `python` with uv: `--no-deps --require-hashes`,
    hardlinked from uv's cache, ignoring this machine's uv config; ResolveFailed on failure."""
    from uv import find_uv_bin

    cmd = [
        find_uv_bin(),
        "pip",
        "install",
        "--python",
        str(python),
        "--no-deps",
        "--require-hashes",
        "--no-config",
        "--link-mode",
        "hardlink",
        "--cache-dir",
        str(cache),
        "-r",
        str(pip_lock),
    ]
    with _uv_index(index_url) as (url, env):
        if url:
            cmd += ["--index-url", url]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise ResolveFailed(proc.stderr.strip().splitlines()[-12:])


def compile_requirements(
    requirements: Sequence[str],
    python_version: str,
    platform: str,
    index_url: str | None,
    constraints: Mapping[str, str] | None = None,
    only_binary: bool = False,
) -> str:
    """Resolve `requirements` with uv to hashed pins (no header, no annotations).

    `constraints` (name -> version) are distributions that are already installed by conda: the
    resolution must use exactly those versions, and they are left out of the output."""
    from uv import find_uv_bin

    cmd = [
        find_uv_bin(),
        "pip",
        "compile",
        "-",
        "--generate-hashes",
        "--no-header",
        "--quiet",
        "--python-version",
        python_version,
        "--python-platform",
        UV_PLATFORM[platform],
        "--no-annotate",
        "--no-config",
    ]
    if only_binary:
        cmd += ["--only-binary", ":all:"]
    with tempfile.TemporaryDirectory(prefix="baseliner-uv-") as tmp, _uv_index(index_url) as (url, env):
        if url:
            cmd += ["--index-url", url]
        if constraints:
            path = Path(tmp) / "conda-provided.txt"
            path.write_text("".join(f"{n}=={v}\n" for n, v in sorted(constraints.items())))
            cmd += ["--constraint", str(path)]
            for name in sorted(constraints):
                cmd += ["--no-emit-package", name]
        proc = subprocess.run(
            cmd, input="\n".join(requirements) + "\n", text=True, capture_output=True, env=env
        )
    if proc.returncode != 0:
        raise ResolveFailed(proc.stderr.strip().splitlines()[-15:])
    return proc.stdout


def _pip_env() -> dict[str, str]:
    """pip's environment without this machine's pip configuration (find-links, extra indexes,
    constraints): the lock says which bytes to fetch, the index says from where."""
    keep = {"PIP_CERT", "PIP_DEFAULT_TIMEOUT"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in keep}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def download_wheels(
    pins: Sequence[Pin],
    dest: Path,
    python_version: str,
    platform: str,
    index_url: str | None,
) -> dict[str, Wheel]:
    """The wheel of every pin in `dest` (downloaded with pip where missing), by pin name.

    A wheel already in `dest` whose sha256 is pinned is used as it is; nothing is fetched when
    every pin has one."""
    dest.mkdir(parents=True, exist_ok=True)
    found = _wheels_by_pin(pins, dest)
    missing = [p for p in pins if p.name not in found]
    if missing:
        if platform not in PIP_PLATFORM:
            raise ChannelError(f"wheels for {platform} cannot be downloaded here (linux platforms only)")
        with tempfile.TemporaryDirectory(prefix="baseliner-pip-") as tmp:
            reqs = Path(tmp) / "requirements.txt"
            reqs.write_text(
                "".join(
                    f"{p.name}=={p.version} " + " ".join(f"--hash=sha256:{h}" for h in p.hashes) + "\n"
                    for p in missing
                )
            )
            abi = "cp" + python_version.replace(".", "")
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--require-hashes",
                "--python-version",
                python_version,
                "--implementation",
                "cp",
                "--abi",
                abi,
                "--abi",
                "abi3",
                "--abi",
                "none",
                "--index-url",
                index_url or DEFAULT_INDEX,
                "--dest",
                str(dest),
                "--progress-bar",
                "off",
                "-q",
                "-r",
                str(reqs),
            ]
            for tag in PIP_PLATFORM[platform]:
                cmd += ["--platform", tag]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=_pip_env())
        if proc.returncode != 0:
            raise ChannelError(
                f"downloading {len(missing)} wheels failed",
                details=proc.stderr.strip().splitlines()[-12:],
                detail_limit=12,
                hint="check the index (`pip_index_url` in baseliner.yaml); a hash mismatch means the "
                "index serves other bytes than the lock pins: re-lock with `invoke channel --lock`",
            )
        found = _wheels_by_pin(pins, dest)
    absent = [f"{p.name}=={p.version}" for p in pins if p.name not in found]
    if absent:
        raise ChannelError("the index has no wheel for some pinned distributions", details=absent)
    return found


def _wheels_by_pin(pins: Sequence[Pin], dest: Path) -> dict[str, Wheel]:
    by_hash = {h: p for p in pins for h in p.hashes}
    found: dict[str, Wheel] = {}
    for wheel in sorted(dest.glob("*.whl")):
        sha = sha256_file(wheel)
        pin = by_hash.get(sha)
        if pin is not None:
            found[pin.name] = Wheel(wheel, sha)
    return found


def pip_requires(prefix: Path) -> dict[str, list[str]]:
    """Each installed distribution of the environment `prefix` -> the normalised names it requires
    (its Requires-Dist whose markers hold without extras, evaluated for this interpreter)."""
    import importlib.metadata

    from packaging.requirements import InvalidRequirement, Requirement

    out: dict[str, list[str]] = {}
    for site in sorted(prefix.glob("lib/python3*/site-packages")):
        for dist in importlib.metadata.distributions(path=[str(site)]):
            names = set()
            for text in dist.requires or []:
                try:
                    req = Requirement(text)
                except InvalidRequirement:
                    continue
                if req.marker is None or req.marker.evaluate({"extra": ""}):
                    names.add(normalise(req.name))
            out[normalise(dist.metadata["Name"])] = sorted(names)
    return out
