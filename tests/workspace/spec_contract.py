"""The shipped Azure ML REST spec (swagger 2.0) as JSON Schema, to judge answers by.

Read from ``../shared/reference/azure-ml-rest-spec/`` beside the repository (absent: the
contract tests skip, saying so). Every ``.json`` file of the spec is registered under its
own ``file://`` URI, so relative ``$ref``s (into ``../../../../../common-types/...``) resolve
as they do upstream. Swagger's dialect is translated to JSON Schema 2020-12:

- ``additionalProperties: false`` → ``unevaluatedProperties: false``, so properties a
  schema takes through ``allOf`` (swagger's inheritance) are not "additional"; a definition
  other definitions inherit from (``allOf``) keeps no such rule: its children judge the
  properties they add;
- ``x-nullable: true`` → ``null`` is allowed too;
- a ``$ref`` to a discriminator base (``discriminator: jobType`` on ``JobBase``…) outside an
  ``allOf`` → the base, plus: the discriminator must be one of the subtypes' values
  (``x-ms-discriminator-value``, else the definition's name), and the matching subtype's
  schema applies (``if``/``then``).

:meth:`SpecContract.check` finds the operation by method and path template and validates a
body against the response schema of its status (or ``default``, ARM's ``ErrorResponse``).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_ROOT = REPO_ROOT.parent / "shared" / "reference" / "azure-ml-rest-spec" / "specification"
STABLE = (
    SPEC_ROOT
    / "machinelearningservices/resource-manager/Microsoft.MachineLearningServices"
    / "stable/2024-04-01"
)
EXAMPLES = STABLE / "examples"


def spec_available() -> bool:
    return (STABLE / "mfe.json").is_file()


def _subtypes(definitions: dict[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    """base name → (discriminator property, {value: subtype name}), within one file."""
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for name, schema in definitions.items():
        discriminator = schema.get("discriminator")
        if isinstance(discriminator, str):
            found[name] = (discriminator, {})
    for name, schema in definitions.items():
        for parent in schema.get("allOf", []):
            ref = parent.get("$ref", "")
            base = ref.rsplit("/", 1)[-1] if ref.startswith("#/definitions/") else None
            if base in found:
                value = schema.get("x-ms-discriminator-value", name)
                found[base][1][value] = name
    return found


def _translate(node: Any, subtypes: dict[str, tuple[str, dict[str, str]]], in_all_of: bool) -> Any:
    if isinstance(node, list):
        return [_translate(item, subtypes, in_all_of) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "allOf":
            out[key] = [_translate(v, subtypes, True) for v in value]
        elif key in ("discriminator",) or key.startswith("x-ms-"):
            continue
        elif key in ("properties", "definitions", "parameters", "responses", "paths") and (
            isinstance(value, dict)
        ):
            out[key] = {k: _translate(v, subtypes, False) for k, v in value.items()}
        else:
            out[key] = _translate(value, subtypes, False)
    if out.get("additionalProperties") is False:
        del out["additionalProperties"]
        out["unevaluatedProperties"] = False
    if node.get("x-nullable") is True:
        out.pop("x-nullable", None)
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif "$ref" in out:
            out = {"anyOf": [out, {"type": "null"}]}
    out.pop("x-nullable", None)
    ref = node.get("$ref", "")
    base = ref.rsplit("/", 1)[-1] if ref.startswith("#/definitions/") else None
    if base in subtypes and not in_all_of:
        prop, values = subtypes[base]
        out["properties"] = {prop: {"enum": sorted(values)}}
        out["allOf"] = [
            {
                "if": {"properties": {prop: {"const": value}}, "required": [prop]},
                "then": {"$ref": f"#/definitions/{subtype}"},
            }
            for value, subtype in sorted(values.items())
        ]
    return out


@dataclass
class SpecContract:
    registry: Registry = field(default_factory=Registry)
    operations: list[tuple[re.Pattern[str], str, str, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def load(cls) -> SpecContract:
        contract = cls()
        files = [p for p in sorted(SPEC_ROOT.rglob("*.json")) if "examples" not in p.parts]
        documents = {p: json.loads(p.read_text(encoding="utf-8")) for p in files}
        parents = {
            parent["$ref"].rsplit("/", 1)[-1]
            for document in documents.values()
            for schema in document.get("definitions", {}).values()
            for parent in schema.get("allOf", [])
            if "$ref" in parent
        }
        for path, document in documents.items():
            subtypes = _subtypes(document.get("definitions", {}))
            for name, schema in document.get("definitions", {}).items():
                if name in parents:  # swagger's parents are open; their children close them
                    schema.pop("additionalProperties", None)
            translated = _translate(document, subtypes, False)
            uri = path.as_uri()
            contract.registry = contract.registry.with_resource(
                uri, Resource.from_contents(translated, default_specification=DRAFT202012)
            )
            for template, methods in document.get("paths", {}).items():
                pattern = re.compile(
                    "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "/?$",
                    re.IGNORECASE,
                )
                for method, operation in methods.items():
                    if isinstance(operation, dict) and "responses" in operation:
                        contract.operations.append((pattern, method.upper(), uri, operation))
        return contract

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        for pattern, verb, uri, operation in self.operations:
            if verb == method and pattern.match(path):
                return uri, operation
        raise LookupError(f"the spec has no operation {method} {path}")

    def response_schema(self, method: str, path: str, status: int) -> dict[str, Any] | None:
        """The schema of the answer (``None``: the spec says there is no body)."""
        uri, operation = self.operation(method, path)
        responses = operation["responses"]
        response = responses.get(str(status)) or (responses["default"] if status >= 400 else None)
        if response is None:
            raise LookupError(f"the spec allows no {status} for {method} {path}")
        schema = response.get("schema")
        if schema is None:
            return None
        return {"$ref": urljoin(uri, schema["$ref"])} if "$ref" in schema else schema

    def errors(self, schema: dict[str, Any], body: Any) -> list[str]:
        validator = Draft202012Validator(copy.deepcopy(schema), registry=self.registry)
        return [
            f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
            for error in validator.iter_errors(body)
        ]

    def check(self, method: str, path: str, status: int, body: Any) -> list[str]:
        schema = self.response_schema(method, path, status)
        if schema is None:
            return [] if body in (None, b"", "") else ["the spec says this answer has no body"]
        return self.errors(schema, body)

    def definition(self, file: str, name: str) -> dict[str, Any]:
        return {"$ref": (STABLE / file).as_uri() + f"#/definitions/{name}"}
