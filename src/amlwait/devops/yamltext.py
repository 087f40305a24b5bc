"""A small block-style YAML writer for pipeline files, with no dependency.

Only what pipeline YAML needs: mappings (insertion order kept), sequences, strings and
integers, and an optional trailing comment on a scalar (:class:`Commented`). Strings are
written plain when a YAML 1.1 or 1.2 reader (and Azure Pipelines) cannot misread them —
including ``$(macro)``, ``${{ template }}`` and ``$[ runtime ]`` expressions — in single
quotes otherwise, as ``|`` literal blocks when they span lines, and double-quoted with
``\\u`` escapes when they hold anything but printable ASCII. Whatever the string,
``yaml.safe_load`` of the output gives it back unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

# Words that some YAML reader turns into a boolean or null when written plain.
_RESERVED = frozenset({"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", "<<", "="})
_PLAIN_FIRST = re.compile(r"[A-Za-z_$/(]")
_PRINTABLE = re.compile(r"[\x20-\x7e]*\Z")  # \Z: "$" would also match before a final "\n"


@dataclass(frozen=True)
class Commented:
    """A scalar written with a trailing ``# comment`` on its line."""

    value: str | int
    comment: str


Node: TypeAlias = Mapping[str, "Node"] | Sequence["Node"] | str | int | Commented


def _plain_ok(text: str) -> bool:
    return (
        bool(text)
        and _PLAIN_FIRST.match(text) is not None
        and _PRINTABLE.match(text) is not None
        and text == text.strip()
        and ": " not in text
        and " #" not in text
        and not text.endswith(":")
        and text.lower() not in _RESERVED
    )


def scalar(text: str | int) -> str:
    """One-line form of a scalar (never a block)."""
    if isinstance(text, bool):
        return "true" if text else "false"
    if isinstance(text, int):
        return str(text)
    if _plain_ok(text):
        return text
    if _PRINTABLE.match(text):
        return "'" + text.replace("'", "''") + "'"
    return _double_quoted(text)


def _double_quoted(text: str) -> str:
    """A YAML double-quoted scalar: ASCII only, everything else as ``\\u``/``\\U`` escapes."""
    out = []
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code <= 0x7E:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _block_ok(text: str) -> bool:
    if "\n" not in text or text.endswith("\n\n") or text.startswith((" ", "\n")):
        return False
    return all(_PRINTABLE.match(line) and line == line.rstrip() for line in text.split("\n"))


def _block(text: str, indent: int) -> list[str]:
    header = "|" if text.endswith("\n") else "|-"
    pad = " " * indent
    body = text[:-1] if text.endswith("\n") else text
    return [header] + [pad + line if line else "" for line in body.split("\n")]


def _value_lines(value: Node, indent: int) -> tuple[str, list[str]]:
    """(text after ``key:`` or ``-``, following lines) for a value at ``indent``."""
    if isinstance(value, Commented):
        first, rest = _value_lines(value.value, indent)
        return f"{first}  # {value.comment}", rest
    if isinstance(value, str) and _block_ok(value):
        header, *lines = _block(value, indent)
        return " " + header, lines
    if isinstance(value, (str, int)):
        return " " + scalar(value), []
    if isinstance(value, Mapping):
        if not value:
            return " {}", []
        return "", _mapping(value, indent)
    if not value:
        return " []", []
    return "", _sequence(value, indent)


def _mapping(node: Mapping[str, Node], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for key, value in node.items():
        first, rest = _value_lines(value, indent + 2)
        lines.append(f"{pad}{scalar(key)}:{first}")
        lines.extend(rest)
    return lines


def _sequence(node: Sequence[Node], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for item in node:
        if isinstance(item, Mapping) and item:
            inner = _mapping(item, indent + 2)
            lines.append(f"{pad}- {inner[0].lstrip()}")
            lines.extend(inner[1:])
        elif isinstance(item, Sequence) and not isinstance(item, str) and item:
            inner = _sequence(item, indent + 2)
            lines.append(f"{pad}- {inner[0].lstrip()}")
            lines.extend(inner[1:])
        else:
            first, rest = _value_lines(item, indent + 2)
            lines.append(f"{pad}-{first}")
            lines.extend(rest)
    return lines


def dump(document: Mapping[str, Node], *, header: Sequence[str] = ()) -> str:
    """The YAML text of ``document``, after ``header`` lines written as ``#`` comments."""
    lines = [f"# {line}".rstrip() for line in header]
    lines.extend(_mapping(document, 0))
    return "\n".join(lines) + "\n"
