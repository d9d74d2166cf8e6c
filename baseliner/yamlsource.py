"""Loading YAML with line numbers for every key, so errors can say where they come from.

`parse_yaml` parses with pyyaml's safe loader and returns the data plus a map from key paths
(tuples of keys and list indices, as pydantic reports them in `loc`) to 1-based line numbers.

A mapping that gives the same key twice is refused (`DuplicateKeyError`, with both lines): pyyaml
would silently keep the last value, so a second `conda:` list would make the first one vanish.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import Location

# More values than any spec or environment file holds (a conda env export: a few thousand). Aliases
# can make a small file hold exponentially many (`b: &b [*a, *a]`, `c: &c [*b, *b]`, ...), and
# everything after the parser walks the data as a tree.
MAX_VALUES = 100_000

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


def _refused(problem: str, node: yaml.Node) -> yaml.MarkedYAMLError:
    return yaml.MarkedYAMLError(problem=problem, problem_mark=node.start_mark)


def _index(
    node: yaml.Node,
    path: tuple[Any, ...],
    lines: dict[tuple[Any, ...], int],
    duplicates: bool,
    within: frozenset[int] = frozenset(),
) -> None:
    if id(node) in within:  # `&a [*a]`: pyyaml would build a list that holds itself
        raise _refused("an alias refers to a value that contains it", node)
    if len(lines) >= MAX_VALUES:  # each value visited adds its key path
        raise _refused(
            f"the document holds more than {MAX_VALUES:,} values once its aliases are followed", node
        )
    within = within | {id(node)}
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise _refused("a key must be a plain value, not a list or a mapping", key)
            child = (*path, key.value)
            line = key.start_mark.line + 1
            if key.value in seen and not duplicates:
                raise DuplicateKeyError(child, (seen[key.value], line))
            seen[key.value] = line
            lines[child] = line
            _index(value, child, lines, duplicates, within)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*path, i), lines, duplicates, within)


def _scalars(node: yaml.Node) -> Iterator[yaml.ScalarNode]:
    if isinstance(node, yaml.ScalarNode):
        yield node
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _scalars(key)
            yield from _scalars(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _scalars(item)


# What pyyaml's safe constructors raise for a value its tag does not fit (instead of a YAMLError).
_CONSTRUCT_ERRORS = (ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError)


def _construct(node: yaml.Node) -> Any:
    """The value of a composed document. pyyaml's constructors raise ValueError & co. for a tag the
    value does not fit (`!!int x`, `!!int`, `!!timestamp x`): a YAML error at the value's line."""
    try:
        return yaml.SafeLoader("").construct_document(node)
    except _CONSTRUCT_ERRORS as exc:
        for scalar in _scalars(node):
            try:
                yaml.SafeLoader("").construct_object(scalar)
            except _CONSTRUCT_ERRORS:
                tag = scalar.tag.replace("tag:yaml.org,2002:", "!!")
                raise _refused(f"the value {scalar.value!r} is not a valid {tag}", scalar) from None
        raise _refused(f"a value cannot be read ({exc})", node) from None


def parse_yaml(text: str, path: Path, duplicate_keys: bool = False) -> YamlSource:
    """Parse `text` (read from `path`) safely; raise `yaml.YAMLError` on malformed input (with the
    line: also a value its tag refuses, a key that is a list, an alias inside itself, aliases that
    expand to more than `MAX_VALUES` values) and, unless
    `duplicate_keys` (the last one wins, as in pyyaml), `DuplicateKeyError` on a key given twice in
    one mapping (at any depth)."""
    lines: dict[tuple[Any, ...], int] = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return YamlSource(path=path, data=None, lines=lines)
        _index(node, (), lines, duplicate_keys)
        return YamlSource(path=path, data=_construct(node), lines=lines)
    except RecursionError:  # pyyaml composes and constructs recursively
        raise yaml.YAMLError("collections are nested deeper than this parser can follow") from None
