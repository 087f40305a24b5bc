"""Just enough of Azure Pipelines' template expansion to validate our YAML files.

Azure DevOps expands ``${{ }}`` template expressions before it reads a pipeline; the public
schema only knows the expanded form. This expands what our files use: ``${{ if }}`` and
``${{ each }}`` in mappings and sequences, ``${{ expr }}`` inside strings (a whole-string
expression keeps its type, so objects pass through), ``- template: FILE`` in job lists,
and the functions eq, ne, and, or, not, coalesce, replace, format, length, lower.
``$( macros )`` and ``$[ runtime ]`` expressions are left as they are, as Azure does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_TOKEN = re.compile(r"\s*(?:('(?:[^']|'')*')|(-?\d+(?:\.\d+)?)|([A-Za-z_][\w.-]*)|([(),]))")


def _coalesce(*values: Any) -> Any:
    return next((value for value in values if value not in (None, "")), None)


def _format(template: str, *values: Any) -> str:
    return re.sub(r"\{(\d+)\}", lambda m: str(values[int(m.group(1))]), template)


def _same(left: Any, right: Any) -> bool:
    return str(left).lower() == str(right).lower()


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "eq": _same,
    "ne": lambda left, right: not _same(left, right),
    "and": lambda *values: all(truthy(value) for value in values),
    "or": lambda *values: any(truthy(value) for value in values),
    "not": lambda value: not truthy(value),
    "coalesce": _coalesce,
    "replace": lambda text, old, new: str(text).replace(old, new),
    "format": _format,
    "length": len,
    "lower": lambda text: str(text).lower(),
}


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value != "" and value.lower() != "false"
    return bool(value)


class _Parser:
    def __init__(self, text: str, scope: Mapping[str, Any]) -> None:
        self.tokens: list[tuple[str, str]] = []
        position = 0
        text = text.strip()
        while position < len(text):
            match = _TOKEN.match(text, position)
            if not match or match.end() == position:
                raise ValueError(f"cannot parse expression {text!r} at {position}")
            kinds = ("string", "number", "name", "punct")
            kind, value = next(
                (k, v) for k, v in zip(kinds, match.groups(), strict=True) if v is not None
            )
            self.tokens.append((kind, value))
            position = match.end()
        self.scope = scope
        self.index = 0

    def _next(self) -> tuple[str, str]:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _peek(self) -> str | None:
        return self.tokens[self.index][1] if self.index < len(self.tokens) else None

    def parse(self) -> Any:
        value = self._expression()
        if self.index != len(self.tokens):
            raise ValueError(f"trailing tokens in expression: {self.tokens[self.index :]}")
        return value

    def _expression(self) -> Any:
        kind, value = self._next()
        if kind == "string":
            return value[1:-1].replace("''", "'")
        if kind == "number":
            return value
        if kind != "name":
            raise ValueError(f"unexpected {value!r}")
        if self._peek() == "(":
            self._next()
            args: list[Any] = []
            while self._peek() != ")":
                args.append(self._expression())
                if self._peek() == ",":
                    self._next()
            self._next()
            return FUNCTIONS[value.lower()](*args)
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        head, *rest = value.split(".")
        current: Any = self.scope[head]
        for part in rest:
            current = current.get(part) if isinstance(current, Mapping) else None
        return current


def evaluate(expression: str, scope: Mapping[str, Any]) -> Any:
    return _Parser(expression, scope).parse()


def _directive(key: str) -> tuple[str, str] | None:
    match = re.fullmatch(r"\$\{\{\s*(if|each)\s+(.*?)\s*\}\}", key)
    return (match.group(1), match.group(2)) if match else None


def _each(spec: str, scope: Mapping[str, Any]) -> tuple[str, list[Any]]:
    name, collection = re.fullmatch(r"(\w+)\s+in\s+(.+)", spec).groups()  # type: ignore[union-attr]
    return name, list(evaluate(collection, scope) or [])


def interpolate(text: str, scope: Mapping[str, Any]) -> Any:
    whole = _EXPR.fullmatch(text)
    if whole:
        return evaluate(whole.group(1), scope)
    return _EXPR.sub(lambda m: str(evaluate(m.group(1), scope)), text)


class Expander:
    """Expands one file; ``base`` is the folder ``template:`` paths are relative to."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def expand(self, node: Any, scope: Mapping[str, Any]) -> Any:
        if isinstance(node, str):
            return interpolate(node, scope)
        if isinstance(node, list):
            return self._sequence(node, scope)
        if isinstance(node, dict):
            return self._mapping(node, scope)
        return node

    def _mapping(self, node: Mapping[str, Any], scope: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            directive = _directive(key)
            if directive is None:
                out[interpolate(key, scope)] = self.expand(value, scope)
            elif directive[0] == "if":
                if truthy(evaluate(directive[1], scope)):
                    out.update(self._mapping(value, scope))
            else:
                name, items = _each(directive[1], scope)
                for item in items:
                    out.update(self._mapping(value, {**scope, name: item}))
        return out

    def _sequence(self, node: list[Any], scope: Mapping[str, Any]) -> list[Any]:
        out: list[Any] = []
        for item in node:
            directive = (
                _directive(next(iter(item))) if isinstance(item, dict) and len(item) == 1 else None
            )
            if directive is not None:
                body = next(iter(item.values()))
                if directive[0] == "if":
                    if truthy(evaluate(directive[1], scope)):
                        out.extend(self._sequence(body, scope))
                else:
                    name, items = _each(directive[1], scope)
                    for element in items:
                        out.extend(self._sequence(body, {**scope, name: element}))
            elif isinstance(item, dict) and "template" in item:
                out.extend(self._include(item, scope))
            else:
                out.append(self.expand(item, scope))
        return out

    def _include(self, item: Mapping[str, Any], scope: Mapping[str, Any]) -> list[Any]:
        path = self.base / interpolate(item["template"], scope)
        given = self.expand(item.get("parameters", {}), scope)
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
        expanded = expand_document(document, given, base=path.parent, outer=scope)
        return list(expanded["jobs"])


def expand_document(
    document: Mapping[str, Any],
    parameters: Mapping[str, Any],
    *,
    base: Path,
    outer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``document`` with its template expressions expanded for ``parameters`` (its
    declared defaults fill the rest); a missing required parameter raises KeyError.
    ``outer`` is the including file's scope, whose variables stay visible."""
    values: dict[str, Any] = {}
    for declared in document.get("parameters", []):
        name = declared["name"]
        if name in parameters:
            values[name] = parameters[name]
        elif "default" in declared:
            values[name] = declared["default"]
        else:
            raise KeyError(f"required template parameter {name!r} not given")
    unknown = set(parameters) - set(values)
    if unknown:
        raise KeyError(f"unknown template parameters {sorted(unknown)}")
    own_variables = document.get("variables", {})
    scope = {
        "parameters": values,
        "variables": {**dict((outer or {}).get("variables", {})), **own_variables},
    }
    out: dict[str, Any] = {}
    for key, value in document.items():
        out[key] = (
            value if key in ("parameters", "variables") else (Expander(base).expand(value, scope))
        )
    return out
