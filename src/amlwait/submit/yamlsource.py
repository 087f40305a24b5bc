"""YAML read with positions, so every error can name the file, the line and the key.

:func:`load_located` composes the document (``yaml.compose``: nodes with their
``start_mark``) and builds plain Python values from it, recording the line of every key
path on the way. Working on nodes is what lets it refuse a mapping that names the same key
twice, which ``yaml.safe_load`` silently resolves by keeping the last one.

Mapping keys are kept as the scalar's text (``001`` stays ``"001"``, ``true`` stays
``"true"``), because keys here are names; values are built by PyYAML's safe constructor.
Merge keys (``<<``) and non-scalar keys are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from yaml.constructor import ConstructorError, SafeConstructor  # type: ignore[import-untyped]

from amlwait.errors import InputError

KeyPath = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_DEPTH = 64


def dotted(path: KeyPath) -> str:
    """``plants.PLANT001.circuits[0]`` for a key path; ``the document`` for ``()``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "the document"


@dataclass(frozen=True)
class Located:
    """A YAML document's value, with the line (1-based) each key path starts on."""

    value: Any
    source: str
    lines: Mapping[KeyPath, int] = field(default_factory=dict)

    def line(self, path: KeyPath) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def where(self, path: KeyPath) -> str:
        """``FILE:LINE: KEY`` — the prefix of every error about ``path``."""
        return f"{self.source}:{self.line(path)}: {dotted(path)}"

    def error(self, path: KeyPath, message: str) -> InputError:
        return InputError(f"{self.where(path)}: {message}")


def load_located(path: Path, *, what: str) -> Located:
    """Read ``path`` (named as ``what`` in errors about the file itself)."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} {source}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{what} {source}: is a directory; give the YAML file") from None
    except UnicodeDecodeError:
        raise InputError(f"{what} {source}: not UTF-8 text") from None
    except OSError as error:
        raise InputError(f"{what} {source}: cannot be read ({error.strerror})") from None
    return parse_located(text, source)


def parse_located(text: str, source: str) -> Located:
    """Parse YAML ``text``; ``source`` names it in error messages."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = error.problem or error.context or "cannot be parsed"
        raise InputError(f"{source}:{line}: not valid YAML ({problem})") from None
    except yaml.YAMLError as error:
        raise InputError(f"{source}: not valid YAML ({' '.join(str(error).split())})") from None
    lines: dict[KeyPath, int] = {}
    if node is None:
        return Located(None, source, lines)
    builder = _Builder(source, lines)
    return Located(builder.build(node, ()), source, lines)


class _Builder:
    def __init__(self, source: str, lines: dict[KeyPath, int]) -> None:
        self.source = source
        self.lines = lines
        self.constructor = SafeConstructor()

    def fail(self, node: yaml.Node, path: KeyPath, message: str) -> InputError:
        return InputError(f"{self.source}:{node.start_mark.line + 1}: {dotted(path)}: {message}")

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if len(path) > _MAX_DEPTH:
            raise self.fail(node, path, "nested too deeply (a recursive alias?)")
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            first_line: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    raise self.fail(key_node, path, "merge keys (<<) are not supported here")
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self.fail(key_node, path, "a key must be a plain name")
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in first_line:
                    raise self.fail(
                        key_node,
                        (*path, key),
                        f"appears twice (first at line {first_line[key]}); YAML would keep "
                        "only the last one",
                    )
                first_line[key] = line
                child: KeyPath = (*path, key)
                self.lines[child] = line
                result[key] = self.build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        try:
            return self.constructor.construct_object(node, deep=True)
        except ConstructorError as error:
            raise self.fail(node, path, error.problem or "cannot be read") from None
