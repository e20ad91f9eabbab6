"""The JSON Schemas shipped in ``appliance/schemas/`` and their first error, said plainly.

One place for loading a schema from the package and turning jsonschema's best error into a
JSON pointer and a message, for manifests, recipes and whatever comes next.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match


@cache
def load_schema(name: str) -> dict[str, Any]:
    """``appliance/schemas/<name>`` as a dict."""
    text = resources.files("appliance").joinpath("schemas", name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def validator(name: str) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def pointer(parts: Iterable[Any]) -> str:
    """RFC 6901 JSON pointer; the document root is shown as ``/`` so messages stay readable."""
    escaped = [str(p).replace("~", "~0").replace("/", "~1") for p in parts]
    return "/" + "/".join(escaped)


def first_error(name: str, instance: Any) -> tuple[list[Any], str] | None:
    """(path, message) of the most relevant violation of schema ``name``, or None.

    An unexpected key is reported at the key itself, not at the object holding it, so the
    message names the typo.
    """
    error: ValidationError | None = best_match(validator(name).iter_errors(instance))
    if error is None:
        return None
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        path += extra[:1]
    return path, error.message
