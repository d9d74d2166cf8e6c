"""Loading YAML with line numbers for every key, so errors can say where they come from.

`parse_yaml` parses with pyyaml's safe loader and returns the data plus a map from key paths
(tuples of keys and list indices, as pydantic reports them in `loc`) to 1-based line numbers.

A mapping that gives the same key twice is refused (`DuplicateKeyError`, with both lines): pyyaml
would silently keep the last value, so a second `conda:` list would make the first one vanish.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import Location

# C0 controls except none, DEL and C1 controls: nothing in a spec needs them, and a newline or an
# escape sequence in a value is how text breaks out of the line of a generated file.
# (A character class, not a per-character loop: every member name of an unpacked tarball is checked.)
_CONTROL = re.compile("[\x00-\x1f\x7f\x80-\x9f]")


def control_characters(text: str) -> list[str]:
    """The control characters in `text`, shown as escapes (empty when clean)."""
    return [repr(ch) for ch in _CONTROL.findall(text)]


@dataclass(frozen=True)
class YamlSource:
    """Parsed YAML and where each key path sits in the file."""

    path: Path
    data: Any
    lines: dict[tuple[Any, ...], int]

    def line_of(self, loc: tuple[Any, ...]) -> int | None:
        """The line of the longest prefix of `loc` that the file has (the key nearest the problem)."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return None

    def where(self, loc: tuple[Any, ...] = ()) -> Location:
        return Location(self.path, self.line_of(loc))


class DuplicateKeyError(yaml.YAMLError):
    """The same key twice in one mapping: `path` is the key path, `lines` its first and second line."""

    def __init__(self, path: tuple[Any, ...], lines: tuple[int, int]) -> None:
        super().__init__(f"duplicate key {'.'.join(map(str, path))!r} (lines {lines[0]} and {lines[1]})")
        self.path = path
        self.lines = lines


def _index(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            child = (*path, key.value)
            line = key.start_mark.line + 1
            if key.value in seen:
                raise DuplicateKeyError(child, (seen[key.value], line))
            seen[key.value] = line
            lines[child] = line
            _index(value, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*path, i), lines)


def parse_yaml(text: str, path: Path) -> YamlSource:
    """Parse `text` (read from `path`) safely; raise `yaml.YAMLError` on malformed input and
    `DuplicateKeyError` on a key given twice in one mapping (at any depth)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _index(node, (), lines)
    data = yaml.safe_load(text)
    return YamlSource(path=path, data=data, lines=lines)
