"""The circuits file: which plants and circuits get a training job, with what parameters.

::

    plants:
      PLANT001:
        params: {region: north}          # optional, merged under each circuit's own
        circuits:
          CIRCUIT01: {sensor_table: s1}  # a mapping: per-circuit parameters
          CIRCUIT02: {}                  # (or nothing after the colon)
      PLANT002:
        circuits: [CIRCUIT01, CIRCUIT02] # or a list of names

Plant and circuit names match ``^[A-Za-z][A-Za-z0-9_]*$`` (they become part of job names
and matrix leg names). Parameter names are identifiers other than ``plant``, ``circuit``
and ``date``; their values are scalars (string, number, boolean). Every error names the
file, the line and the key: duplicate plants, circuits or parameters, a bad name, a plant
without circuits, an unknown key, or a value of the wrong shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amlwait.errors import InputError
from amlwait.submit.yamlsource import KeyPath, Located, load_located

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
PARAM_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_PARAMS = frozenset({"plant", "circuit", "date"})
TOP_LEVEL_KEYS = ("plants",)
PLANT_KEYS = ("circuits", "params")

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Circuit:
    """One plant's circuit: one training job per run date."""

    plant: str
    circuit: str
    params: Mapping[str, Scalar] = field(default_factory=dict)
    line: int = 0

    @property
    def key(self) -> str:
        return f"{self.plant}/{self.circuit}"


@dataclass(frozen=True)
class CircuitsFile:
    source: str
    circuits: tuple[Circuit, ...]

    def select(self, only: Sequence[str]) -> tuple[Circuit, ...]:
        """The circuits ``only`` names (``PLANT/CIRCUIT`` or a whole ``PLANT``), in file
        order; all of them when ``only`` is empty. An unknown name is an error."""
        if not only:
            return self.circuits
        chosen: set[str] = set()
        plants = {c.plant for c in self.circuits}
        keys = {c.key for c in self.circuits}
        for item in only:
            if item in keys:
                chosen.add(item)
            elif item in plants:
                chosen.update(c.key for c in self.circuits if c.plant == item)
            else:
                plant = item.split("/", 1)[0]
                known = sorted(c.circuit for c in self.circuits if c.plant == plant)
                hint = (
                    f"{plant} has {', '.join(known)}"
                    if known
                    else f"plants are {', '.join(sorted(plants))}"
                )
                raise InputError(f"--only {item}: not in {self.source} ({hint})")
        return tuple(c for c in self.circuits if c.key in chosen)


def load_circuits(path: Path) -> CircuitsFile:
    return parse_circuits(load_located(path, what="--circuits"))


def parse_circuits(doc: Located) -> CircuitsFile:
    top = doc.value
    if not isinstance(top, dict):
        raise doc.error((), "expected a mapping with plants: {PLANT: {circuits: ...}}")
    _no_unknown_keys(doc, (), top, TOP_LEVEL_KEYS)
    plants = top.get("plants")
    if not isinstance(plants, dict) or not plants:
        raise doc.error(("plants",), "expected a mapping of plant names to their circuits")
    circuits: list[Circuit] = []
    for plant, body in plants.items():
        path: KeyPath = ("plants", plant)
        _check_name(doc, path, plant, "plant")
        if not isinstance(body, dict):
            raise doc.error(path, "expected a mapping with circuits (and optional params)")
        _no_unknown_keys(doc, path, body, PLANT_KEYS)
        shared = _params(doc, (*path, "params"), body.get("params"))
        circuits.extend(
            _plant_circuits(doc, plant, (*path, "circuits"), body.get("circuits"), shared)
        )
    return CircuitsFile(doc.source, tuple(circuits))


def _plant_circuits(
    doc: Located, plant: str, path: KeyPath, value: Any, shared: Mapping[str, Scalar]
) -> list[Circuit]:
    if value is None or value == [] or value == {}:
        raise doc.error(path, f"plant {plant} has no circuits; list at least one")
    found: list[Circuit] = []
    if isinstance(value, list):
        seen: dict[str, int] = {}
        for index, name in enumerate(value):
            item_path = (*path, index)
            if not isinstance(name, str):
                raise doc.error(item_path, "expected a circuit name")
            _check_name(doc, item_path, name, "circuit")
            if name in seen:
                raise doc.error(
                    item_path, f"circuit {name} appears twice (first at line {seen[name]})"
                )
            seen[name] = doc.line(item_path)
            found.append(Circuit(plant, name, dict(shared), doc.line(item_path)))
        return found
    if isinstance(value, dict):
        for name, params in value.items():
            item_path = (*path, name)
            _check_name(doc, item_path, name, "circuit")
            own = _params(doc, item_path, params)
            found.append(Circuit(plant, name, {**shared, **own}, doc.line(item_path)))
        return found
    raise doc.error(path, "expected a mapping of circuit names (to parameters) or a list of names")


def _params(doc: Located, path: KeyPath, value: Any) -> dict[str, Scalar]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise doc.error(path, "expected a mapping of parameter names to values")
    params: dict[str, Scalar] = {}
    for name, item in value.items():
        item_path = (*path, name)
        if not PARAM_PATTERN.match(name):
            raise doc.error(
                item_path, "a parameter name is letters, digits and '_', not starting with a digit"
            )
        if name in RESERVED_PARAMS:
            raise doc.error(item_path, f"{name} is set by amlwait submit; use another name")
        if isinstance(item, bool | int | float | str):
            params[name] = item
        else:
            kind = "nothing" if item is None else type(item).__name__
            raise doc.error(item_path, f"expected a string, number or boolean, not {kind}")
    return params


def _check_name(doc: Located, path: KeyPath, name: str, what: str) -> None:
    if not NAME_PATTERN.match(name):
        raise doc.error(
            path,
            f"{name!r} is not a valid {what} name: use letters, digits and '_', starting with "
            "a letter (it becomes part of the job name)",
        )


def _no_unknown_keys(
    doc: Located, path: KeyPath, value: Mapping[str, Any], allowed: Sequence[str]
) -> None:
    for key in value:
        if key not in allowed:
            raise doc.error((*path, key), f"unknown key; expected {', '.join(allowed)}")
