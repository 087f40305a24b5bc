"""Placeholders in the job template (and the name pattern): ``{plant}``, ``{date:%Y_%m_%d}``…

In every string value of the template, ``{KEY}`` and ``{KEY:SPEC}`` are replaced when KEY
is ``plant``, ``circuit``, ``date`` (a :class:`datetime.date`: ``{date}`` is ISO
``2025-11-01``, a SPEC is a ``strftime`` format) or one of the circuit's parameters; SPEC
is Python's format spec (``{epochs:03d}``). Azure ML's own expressions, ``${{...}}`` (e.g.
``${{inputs.data}}``), are left exactly as written. ``{{KEY}}`` writes a literal ``{KEY}``.
Any other ``{KEY}`` is an error naming the file, the line and the key — a typo would
otherwise reach the job as text. Braces that do not enclose an identifier (``{"a": 1}``,
``{}``) are not placeholders and are left alone. Mapping keys are never substituted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from amlwait.errors import InputError
from amlwait.submit.yamlsource import KeyPath, Located, load_located

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKEN = re.compile(
    r"(?P<azureml>\$\{\{.*?\}\})"
    rf"|\{{\{{(?P<escaped>{_IDENT}(?::[^{{}}]*)?)\}}\}}"
    rf"|\{{(?P<key>{_IDENT})(?::(?P<spec>[^{{}}]*))?\}}"
)

Values = Mapping[str, object]


def placeholder_values(
    plant: str, circuit: str, run_date: date, params: Mapping[str, object]
) -> dict[str, object]:
    """What a circuit's placeholders stand for."""
    return {**params, "plant": plant, "circuit": circuit, "date": run_date}


def substitute(text: str, values: Values, where: str, subject: str = "") -> str:
    """``text`` with its placeholders replaced; ``where`` prefixes errors (``FILE:LINE: KEY``)
    and ``subject`` (e.g. ``PLANT001/CIRCUIT01``) says for which circuit."""
    for_subject = f" for {subject}" if subject else ""

    def replace(match: re.Match[str]) -> str:
        if match.group("azureml") is not None:
            return match.group("azureml")
        if match.group("escaped") is not None:
            return "{" + match.group("escaped") + "}"
        key, spec = match.group("key"), match.group("spec") or ""
        if key not in values:
            known = ", ".join(sorted(values))
            raise InputError(
                f"{where}: {{{key}}} is not a known placeholder{for_subject} (known: {known}); "
                f"write {{{{{key}}}}} for a literal {{{key}}}"
            )
        value = values[key]
        try:
            return format(value, spec) if spec else _plain(value)
        except (ValueError, TypeError) as error:
            raise InputError(
                f"{where}: {match.group(0)}: format spec {spec!r} does not suit {value!r}"
                f"{for_subject} ({error})"
            ) from None

    return _TOKEN.sub(replace, text)


def _plain(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as YAML wrote it, not Python's True
    return str(value)


class JobTemplate:
    """An Azure ML command job YAML whose string values hold placeholders."""

    def __init__(self, document: Located, folder: Path) -> None:
        if not isinstance(document.value, dict):
            raise document.error((), "expected an Azure ML command job (a mapping)")
        self.document = document
        self.folder = folder

    @classmethod
    def load(cls, path: Path) -> JobTemplate:
        return cls(load_located(path, what="--job"), path.resolve().parent)

    @property
    def source(self) -> str:
        return self.document.source

    def render(self, values: Values, subject: str = "") -> dict[str, Any]:
        """The job YAML for one circuit (``subject`` names it in errors): every string
        value substituted."""
        rendered: dict[str, Any] = self._render(self.document.value, (), values, subject)
        return rendered

    def _render(self, value: Any, path: KeyPath, values: Values, subject: str) -> Any:
        if isinstance(value, str):
            return substitute(value, values, self.document.where(path), subject)
        if isinstance(value, dict):
            return {k: self._render(v, (*path, k), values, subject) for k, v in value.items()}
        if isinstance(value, list):
            return [self._render(v, (*path, i), values, subject) for i, v in enumerate(value)]
        return value
