"""Builds the real conda channel the tests lock, install and pack against.

Packages (all written with baseliner.condapkg, indexed with py-rattler):

* python — the relocatable interpreter seeded from the running CPython;
* prefixdemo 1.0 (linux-64, .tar.bz2) — a compiled C program holding a *binary* prefix
  placeholder, a config file holding a *text* placeholder, a symlink, a script;
* hello-noarch 0.3 (noarch: python, .conda) — a module and an entry point `hello-noarch`;
* libfoo 1.0 and 2.0 (.conda), and needs-old-foo 1.0 (depends libfoo <2) — for solver tests;
* _x86_64-microarch-level 1 and 3 (noarch: generic), shaped like conda-forge's: each build depends
  on `__archspec 1 <microarch>`, and fastkernel 1.0 depends on level >=1;
* activatedemo 1.0 — exports variables from etc/conda/activate.d (a data dir under the prefix, a
  flag, and a PATH prepend to a tool), as GDAL or PROJ do.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from baseliner.channels import current_subdir, index_channel, python_package_spec
from baseliner.condapkg import FileEntry, PackageSpec, Symlink, write_package

# 255 characters, as conda-build pads its build prefix: room for any test prefix.
BINARY_PLACEHOLDER = ("/tmp/baseliner-fixture-build-prefix" + "_placehold" * 30)[:255]
TEXT_PLACEHOLDER = "/opt/fixture-build/text-prefix"

ACTIVATE_SCRIPT = """\
export ACTIVATEDEMO_DATA="${CONDA_PREFIX}/share/activatedemo"
export ACTIVATEDEMO_FLAG=on
export PATH="${CONDA_PREFIX}/libexec/activatedemo:${PATH}"
"""

C_SOURCE = r"""
#include <stdio.h>
static const char prefix[] = "%s";
int main(void) { printf("%%s\n", prefix); return 0; }
"""


def _compile_prefix_binary(workdir: Path) -> bytes:
    src = workdir / "prefixdemo.c"
    src.write_text(C_SOURCE % BINARY_PLACEHOLDER)
    out = workdir / "prefixdemo"
    subprocess.run(["gcc", "-O1", "-o", str(out), str(src)], check=True)
    return out.read_bytes()


def fixture_packages(workdir: Path) -> list[PackageSpec]:
    subdir = current_subdir()
    binary = _compile_prefix_binary(workdir)
    prefixdemo = PackageSpec(
        name="prefixdemo",
        version="1.0",
        build="h0_0",
        subdir=subdir,
        files={
            "bin/prefixdemo": FileEntry(
                binary, executable=True, placeholder=BINARY_PLACEHOLDER, file_mode="binary"
            ),
            "bin/prefixdemo-link": Symlink("prefixdemo"),
            "bin/prefixdemo-config": FileEntry(
                f"#!/bin/sh\ncat {TEXT_PLACEHOLDER}/share/prefixdemo/config.txt\n".encode(),
                executable=True,
                placeholder=TEXT_PLACEHOLDER,
            ),
            "share/prefixdemo/config.txt": FileEntry(
                f"data_dir={TEXT_PLACEHOLDER}/share/prefixdemo\n".encode(),
                placeholder=TEXT_PLACEHOLDER,
            ),
        },
    )
    hello = PackageSpec(
        name="hello-noarch",
        version="0.3",
        build="py_0",
        noarch="python",
        depends=("python >=3.8",),
        entry_points=("hello-noarch = hello_noarch:main",),
        files={
            "site-packages/hello_noarch/__init__.py": FileEntry(
                b"def main():\n    print('hello from noarch')\n    return 0\n"
            ),
        },
    )
    libfoo = [
        PackageSpec(
            name="libfoo",
            version=v,
            build="h0_0",
            subdir=subdir,
            files={f"lib/libfoo-{v}.txt": FileEntry(f"libfoo {v}\n".encode())},
        )
        for v in ("1.0", "2.0")
    ]
    needs_old = PackageSpec(
        name="needs-old-foo",
        version="1.0",
        build="h0_0",
        subdir=subdir,
        depends=("libfoo <2",),
        files={"share/needs-old-foo.txt": FileEntry(b"needs libfoo 1\n")},
    )
    microarch = [
        PackageSpec(
            name="_x86_64-microarch-level",
            version=level,
            build=f"2_{arch}",
            noarch="generic",
            depends=(f"__archspec 1 {arch}",),
            files={f"share/microarch-level-{level}.txt": FileEntry(f"{arch}\n".encode())},
        )
        for level, arch in (("1", "x86_64"), ("3", "x86_64_v3"))
    ]
    fastkernel = PackageSpec(
        name="fastkernel",
        version="1.0",
        build="h0_0",
        subdir=subdir,
        depends=("_x86_64-microarch-level >=1",),
        files={"share/fastkernel.txt": FileEntry(b"fast\n")},
    )
    activatedemo = PackageSpec(
        name="activatedemo",
        version="1.0",
        build="h0_0",
        subdir=subdir,
        files={
            "etc/conda/activate.d/activatedemo.sh": FileEntry(ACTIVATE_SCRIPT.encode()),
            "etc/conda/deactivate.d/activatedemo.sh": FileEntry(
                b"unset ACTIVATEDEMO_DATA ACTIVATEDEMO_FLAG\n"
            ),
            "share/activatedemo/data.txt": FileEntry(b"activatedemo data\n"),
            "libexec/activatedemo/activatedemo-tool": FileEntry(
                b"#!/bin/sh\necho activatedemo tool\n", executable=True
            ),
        },
    )
    return [prefixdemo, hello, *libfoo, needs_old, *microarch, fastkernel, activatedemo]


def build_fixture_channel(channel_dir: Path) -> Path:
    """Write every fixture package (and the relocatable python) into `channel_dir`, indexed."""
    with tempfile.TemporaryDirectory() as tmp:
        write_package(python_package_spec(Path(tmp)), channel_dir)
        for i, spec in enumerate(fixture_packages(Path(tmp))):
            write_package(spec, channel_dir, "conda" if i % 2 else "tar.bz2")
    index_channel(channel_dir)
    return channel_dir
