"""Channels: names, mirrors, and the local channel seeded from the running interpreter.

A channel in a spec is a name (`conda-forge`), an `http(s)://` URL, or a local path / `file://`
URL. Each has a *canonical* URL, which is what locks record (so a lock is the same on every
machine), and a *source* URL, where packages are actually fetched from: the org config's mirror for
that name when there is one, else the canonical URL.

`seed_channel` writes a local channel holding a relocatable `python` conda package made from the
running CPython (the interpreter with RUNPATH `$ORIGIN/../lib` set by patchelf, its shared library
and the byte-compiled standard library), plus any package archives given to it, indexed with py-rattler.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .condapkg import FileEntry, PackageSpec, Symlink, tree_files, write_package
from .errors import ChannelError

DEFAULT_CHANNEL_ALIAS = "https://conda.anaconda.org"

# Parts of the standard library an environment never needs at run time.
_STDLIB_SKIP = {
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "site-packages",
    "lib2to3",
    "__pycache__",
    "ensurepip",
    "pydoc_data",
}


@dataclass(frozen=True)
class ChannelRef:
    """A channel as the spec names it, where locks say it lives, and where it is fetched from."""

    name: str
    canonical: str
    source: str

    def to_source(self, url: str) -> str:
        """Turn a canonical package URL into the URL to fetch it from."""
        if url.startswith(self.canonical + "/"):
            return self.source + url[len(self.canonical) :]
        return url

    def to_canonical(self, url: str) -> str:
        if url.startswith(self.source + "/"):
            return self.canonical + url[len(self.source) :]
        return url


def split_credentials(url: str) -> tuple[str, tuple[str, str, str] | None]:
    """`url` without `user:password@`, and (host, user, password) when it had them."""
    parts = urllib.parse.urlsplit(url)
    if not parts.username or parts.password is None:
        return url, None
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    clean = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, (netloc, urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password))


@contextlib.contextmanager
def credentials(urls: Sequence[str]) -> Iterator[None]:
    """Hand credentials found in channel URLs to py-rattler through a private auth file
    (RATTLER_AUTH_FILE, mode 0600, removed afterwards), so URLs that rattler caches or writes into
    conda-meta never carry them."""
    entries: dict[str, object] = {}
    for url in urls:
        _, found = split_credentials(url)
        if found:
            netloc, user, password = found
            for key in {netloc, netloc.split(":")[0]}:
                entries[key] = {"BasicHTTP": {"username": user, "password": password}}
    if not entries:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="baseliner-auth-") as tmp:
        path = Path(tmp) / "credentials.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps(entries))
        old = os.environ.get("RATTLER_AUTH_FILE")
        os.environ["RATTLER_AUTH_FILE"] = str(path)
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("RATTLER_AUTH_FILE", None)
            else:
                os.environ["RATTLER_AUTH_FILE"] = old


def resolve_channel(name: str, mirrors: Mapping[str, str], base_dir: Path) -> ChannelRef:
    """Canonical and source URL of a channel named in a spec (relative paths: from `base_dir`)."""
    if "://" in name:
        canonical = name.rstrip("/")
    elif name.startswith(("/", ".")):
        canonical = (base_dir / name).resolve().as_uri()
    else:
        canonical = f"{DEFAULT_CHANNEL_ALIAS}/{name.strip('/')}"
    source, _ = split_credentials(mirrors.get(name) or mirrors.get(canonical) or canonical)
    return ChannelRef(name=name, canonical=canonical, source=source.rstrip("/"))


def resolve_channels(names: Sequence[str], mirrors: Mapping[str, str], base_dir: Path) -> list[ChannelRef]:
    """Each spec channel resolved to where it is read from (mirror, directory or URL)."""
    return [resolve_channel(n, mirrors, base_dir) for n in names]


# --- indexing --------------------------------------------------------------------


def index_channel(channel_dir: Path) -> None:
    """(Re)write repodata.json for every subdir of a local channel with py-rattler's indexer."""
    from .engine import EngineError, index

    (channel_dir / "noarch").mkdir(parents=True, exist_ok=True)
    try:
        index(channel_dir)
    except EngineError as exc:
        raise ChannelError(f"could not index channel {str(channel_dir)!r}: {exc.text}") from exc


# --- seeding the local channel ---------------------------------------------------------------


def current_subdir() -> str:
    """The conda subdir of this machine, e.g. `linux-64`."""
    machine = platform.machine()
    arch = {"x86_64": "64", "aarch64": "aarch64", "ppc64le": "ppc64le", "arm64": "arm64"}[machine]
    system = {"linux": "linux", "darwin": "osx"}[sys.platform]
    return f"{system}-{arch}"


# Bump when `python_package_spec` writes other files (2: the standard library's pycs).
PYTHON_PACKAGE_FORMAT = 2


def python_package_spec(build_root: Path) -> PackageSpec:
    """A relocatable `python` package from the running interpreter (Linux, shared libpython)."""
    prefix = Path(sys.base_prefix)
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    libname = sysconfig.get_config_var("INSTSONAME")
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not libname:
        raise ChannelError(
            "the running python is not built with a shared libpython",
            details=[f"interpreter: {sys.base_prefix}"],
            hint="seed from a CPython built with --enable-shared (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)",
        )
    if shutil.which("patchelf") is None:
        raise ChannelError("patchelf is not installed", hint="apt-get install patchelf")
    stage = build_root / "python"
    (stage / "bin").mkdir(parents=True)
    (stage / "lib").mkdir()
    exe = stage / "bin" / f"python{ver}"
    shutil.copy2(Path(sys.base_prefix) / "bin" / f"python{ver}", exe)
    # The interpreter finds libpython next to itself wherever the env is unpacked.
    subprocess.run(["patchelf", "--set-rpath", "$ORIGIN/../lib", str(exe)], check=True)
    shutil.copy2(prefix / "lib" / libname, stage / "lib" / libname)
    for link in (f"libpython{ver}.so",):
        if (prefix / "lib" / link).exists():
            (stage / "lib" / link).symlink_to(libname)
    stdlib = prefix / "lib" / f"python{ver}"
    shutil.copytree(
        stdlib,
        stage / "lib" / f"python{ver}",
        symlinks=True,
        ignore=lambda d, names: {
            n for n in names if n in _STDLIB_SKIP or n.startswith("config-") or n.endswith(".pyc")
        },
    )
    _compile_stdlib(stage / "lib" / f"python{ver}", f"lib/python{ver}", str(prefix))
    (stage / "lib" / f"python{ver}" / "site-packages").mkdir()
    files = tree_files(stage, placeholder=str(prefix))
    files[f"lib/python{ver}/site-packages/README.txt"] = FileEntry(b"site-packages of this env\n")
    files["bin/python"] = Symlink(f"python{ver}")
    files["bin/python3"] = Symlink(f"python{ver}")
    return PackageSpec(
        name="python",
        version=platform.python_version(),
        build=f"0_baseliner_cp{ver.replace('.', '')}",
        subdir=current_subdir(),
        files=files,
        license="Python-2.0",
    )


def _compile_stdlib(stdlib: Path, shown_as: str, placeholder: str) -> None:
    """Byte-compile the standard library into its __pycache__, as a conda python package ships
    it: without the .pyc files, every interpreter start in the env compiles the modules it imports
    (uv's interpreter query, which imports json, platform and sysconfig, took 0.32 s instead of
    0.03 s), and in a read-only env on every start.

    Checked-hash pycs (PEP 552) stay valid whatever the files' mtimes (the build normalises them)
    and are refused by the interpreter if the source ever changes. A module whose source names the
    build prefix gets none: the installer rewrites that source, so its pyc would be stale. One
    process, in sorted order, with a fixed hash seed and relative file names: the same bytes on
    every build, so the package's sha256 in a lock holds."""
    needs_prefix = sorted(
        str(path) for path in stdlib.rglob("*.py") if placeholder.encode() in path.read_bytes()
    )
    command = [
        str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"),
        "-I",
        "-m",
        "compileall",
        "-q",
        "-j",
        "1",
        "--invalidation-mode",
        "checked-hash",
        "-s",
        str(stdlib),
        "-p",
        shown_as,
        str(stdlib),
    ]
    if needs_prefix:
        command[-1:-1] = ["-x", "|".join(f"^{re.escape(path)}$" for path in needs_prefix)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(command, env={**env, "PYTHONHASHSEED": "0"}, capture_output=True, text=True)
    if done.returncode != 0:
        raise ChannelError(
            f"byte-compiling the standard library at {stdlib} failed",
            details=(done.stdout + done.stderr).strip().splitlines()[-8:],
            hint="the interpreter's standard library may be damaged; reinstall it",
        )


def seed_channel(channel_dir: Path, extra_packages: Sequence[Path] = ()) -> list[Path]:
    """Write the local channel: the relocatable python plus `extra_packages`; then index it."""
    channel_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="baseliner-seed-") as tmp:
        written.append(write_package(python_package_spec(Path(tmp)), channel_dir))
    for archive in extra_packages:
        if not archive.name.endswith((".conda", ".tar.bz2")):
            raise ChannelError(f"{str(archive)!r} is not a conda package (.conda or .tar.bz2)")
        subdir = _archive_subdir(archive)
        target = channel_dir / subdir / archive.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(archive, target)
        written.append(target)
    index_channel(channel_dir)
    return written


def _archive_subdir(archive: Path) -> str:
    import json

    from .engine import EngineError, extract

    with tempfile.TemporaryDirectory() as tmp:
        try:
            extract(archive, Path(tmp))
            index = json.loads((Path(tmp) / "info" / "index.json").read_text())
        except (EngineError, OSError, ValueError) as exc:
            raise ChannelError(f"cannot read package {str(archive)!r}: {exc}") from exc
    return str(index.get("subdir") or "noarch")
