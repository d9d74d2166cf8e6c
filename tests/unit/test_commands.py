"""Every command baseliner prints (errors, hints, progress), writes into a generated file's header,
or shows in the README is parsed by the real invoke programs: `invoke` loading this repo's
tasks.py, and the `baseliner` console script. A command that invoke would answer with
"No idea what 'demo' is!" fails here."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMAND = re.compile(r"`((?:invoke|baseliner) [^`]*)`")
# Sample values for the placeholders of f-strings and templates, by what the expression names.
SAMPLES = (
    ("_base_tarball", "demo-2026.12-linux-64.tar.gz"),
    ("prefix", "/opt/conda/envs/exp-1"),
    ("path", "overlay.yaml"),
    ("source", "overlay.yaml"),
    ("flag", " --directory /srv/pkgs"),
    ("only", " -n demo"),
)
DYNAMIC = {"{command}", "{rebuild}"}  # built elsewhere and parsed by the tests below


def _sample(expression: str) -> str:
    return next((value for needle, value in SAMPLES if needle in expression), "demo")


def _expand_optional(text: str) -> list[str]:
    """README usage lines: every `[a|b]` group left out, or given as each of its alternatives."""
    match = re.search(r"\[([^\[\]]*)\]", text)
    if match is None:
        return [text]
    head, tail = text[: match.start()], text[match.end() :]
    options = ["", *match.group(1).replace("\\|", "|").split("|")]
    return [v for option in options for v in _expand_optional(head + option + tail)]


def _metavars(words: list[str]) -> list[str]:
    out = []
    for before, word in zip(["", *words], words, strict=False):
        if re.fullmatch(r"[A-Z][A-Z0-9_@/.-]*", word):
            word = "0" if before == "--cluster" else word.lower()
        out.append(word)
    return out


def printed_commands() -> list[tuple[str, str]]:
    """(where, command) for every command in the package's strings, the templates and the README."""
    sources = [
        *sorted((ROOT / "baseliner").rglob("*.py")),
        *sorted((ROOT / "baseliner" / "templates").glob("*.j2")),
        *sorted((ROOT / "templates").glob("*.j2")),
    ]
    found: list[tuple[str, str]] = []
    for path in [*sources, ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        for match in COMMAND.finditer(text):
            command = " ".join(match.group(1).split())
            if any(d in command for d in DYNAMIC) or "{_propose_command" in command:
                continue
            command = re.sub(r"\{\{[^}]*\}\}", "demo", command)
            command = re.sub(r"\{([^{}]*(?:\([^)]*\))?)\}", lambda m: _sample(m.group(1)), command)
            where = f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
            for variant in _expand_optional(command) if path.name == "README.md" else [command]:
                found.append((where, " ".join(_metavars(shlex.split(variant)))))
    return sorted(set(found))


def parse_all(commands: list[str]) -> list[dict]:
    argvs = [shlex.split(c) for c in commands]
    out = subprocess.run(
        [sys.executable, "-m", "tests.support.parse_commands", str(ROOT)],
        input=json.dumps(argvs),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return list(json.loads(out.stdout))


def test_the_scan_finds_the_commands_users_meet() -> None:
    commands = {c for _, c in printed_commands()}
    assert len(commands) > 25
    for expected in ("invoke lock -n demo", "invoke validate -n demo", "baseliner lock-overlay overlay.yaml"):
        assert expected in commands


def test_every_printed_command_parses_with_the_real_invoke_program() -> None:
    found = printed_commands()
    results = parse_all([c for _, c in found])
    bad = [
        f"{where}: `{c}` -> {r['error']}"
        for (where, c), r in zip(found, results, strict=True)
        if "error" in r
    ]
    assert not bad, "\n".join(bad)
    for (_, command), result in zip(found, results, strict=True):
        words = shlex.split(command)
        if not words[1].startswith("-"):
            task = result["tasks"][0]["task"]
            assert task == words[1] or task.startswith(f"{words[1]}."), (command, task)  # or its default


def test_the_parser_is_not_lenient() -> None:
    results = parse_all(["invoke lock demo", "baseliner drift", "baseliner unpack only-one"])
    assert results[0] == {"error": "No idea what 'demo' is!"}
    assert "prefix" in results[1]["error"] and "dest" in results[2]["error"]


@pytest.mark.parametrize(
    ("roots", "prefixes", "files", "caches", "threshold", "out"),
    [
        (["/opt/conda/envs"], None, None, None, 0.9, "proposal"),
        (["/srv/a b", "/srv/c"], ["/home/u/env"], ["x.yml"], ["/opt/pkgs"], 0.8, "out dir"),
    ],
)
def test_the_propose_command_printed_by_audit_parses_with_its_inputs(
    roots: list[str],
    prefixes: list[str] | None,
    files: list[str] | None,
    caches: list[str] | None,
    threshold: float,
    out: str,
) -> None:
    from baseliner.tasks import _propose_command

    command = _propose_command(3, roots, prefixes, files, caches, threshold, out)
    [result] = parse_all([command])
    args = result["tasks"][0]["args"]
    assert args["cluster"] == 3 and args["root"] == roots and args.get("threshold", 0.9) == threshold
    assert args.get("prefix") == prefixes and args.get("file") == files and args.get("cache") == caches
    assert args.get("out", "proposal") == out


def test_the_rebuild_hints_of_the_lint_parse() -> None:
    import ast

    calls = []
    for name in ("build.py", "overlay_build.py"):
        tree = ast.parse((ROOT / "baseliner" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "raise_on_errors":
                calls.append(ast.unparse(node.args[2]))
    assert len(calls) == 2
    commands = [re.sub(r"\{[^}]*\}", lambda m: _sample(m.group(0)), c.removeprefix("f")[1:-1]) for c in calls]
    assert all("error" not in r for r in parse_all(commands)), commands
