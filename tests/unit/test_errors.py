"""One error hierarchy, each class its own exit code, as the README's table says, and the CLI
exits with it (no traceback); one boundary per engine (only engine.py imports rattler, only pypi.py uv, only registry.py oras)."""

from __future__ import annotations

import errno
import re
import subprocess
import sys
from pathlib import Path

import pytest

from baseliner import errors

ROOT = Path(__file__).resolve().parents[2]


def test_every_error_class_has_its_own_code_and_the_readme_lists_them_all() -> None:
    classes = errors.error_classes()
    codes = [c.exit_code for c in classes]
    assert len(set(codes)) == len(codes)
    table = dict(re.findall(r"^\| (\d+) \| `(\w+)` \|", (ROOT / "README.md").read_text(), flags=re.M))
    assert {int(k): v for k, v in table.items()} == {c.exit_code: c.__name__ for c in classes}


def test_a_full_disk_is_told_by_errno_through_the_causes() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "no room")  # the wording varies; the errno does not
        except OSError as exc:
            raise errors.PackError("writing the tarball failed") from exc
    except errors.PackError as wrapped:
        assert errors.is_disk_full(wrapped)
    assert not errors.is_disk_full(errors.PackError("No space left on device (only the text)"))


def test_the_cli_exits_with_the_errors_code_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "bad.yaml").write_text(
        "schema_version: 1\nname: bad\nversion: '1'\nconda: [x]\nconda: [y]\n"
    )
    baseliner = str(Path(sys.executable).with_name("baseliner"))
    out = subprocess.run(
        [baseliner, "validate", "-n", "bad"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "BASELINER_ROOT": str(tmp_path)},
    )
    assert out.returncode == errors.SpecError.exit_code, out.stderr
    assert "gives the key 'conda' twice" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("engine", "boundary"),
    [("rattler", "baseliner/engine.py"), ("uv", "baseliner/pypi.py"), ("oras", "baseliner/registry.py")],
)
def test_each_engine_is_imported_by_its_boundary_module_alone(engine: str, boundary: str) -> None:
    import ast

    importers = []
    for path in sorted((ROOT / "baseliner").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            if any(n == engine or n.startswith(f"{engine}.") for n in names):
                importers.append(path.relative_to(ROOT).as_posix())
    assert sorted(set(importers)) == [boundary]
