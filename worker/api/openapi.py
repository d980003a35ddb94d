"""The OpenAPI document served at ``/openapi.json``.

It is the platform's own published document (``spec/speko-openapi-excerpt.json``, a
verbatim copy of the platform's excerpt) cut down to ``/v1/callbacks*`` and the
components those paths use — not one generated from the routes: SDKs are generated from
the published document, so serving it verbatim is how the contract stays exact.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

PREFIX = "/v1/callbacks"


@cache
def published() -> dict[str, Any]:
    text = files("worker.api").joinpath("spec/speko-openapi-excerpt.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


@cache
def document() -> dict[str, Any]:
    spec = published()
    paths = {p: v for p, v in spec["paths"].items() if p.startswith(PREFIX)}
    components: dict[str, dict[str, Any]] = {
        "securitySchemes": dict(spec["components"]["securitySchemes"])
    }
    pending, seen = _refs(paths), set()
    while pending:
        ref = pending.pop()
        seen.add(ref)
        _, _, kind, name = ref.split("/")
        node = spec["components"][kind][name]
        components.setdefault(kind, {})[name] = node
        pending |= _refs(node) - seen
    return {
        "openapi": spec["openapi"],
        "info": {
            "title": "Callbacks admin API",
            "version": spec["info"]["version"],
            "description": "List, inspect, cancel, and dispatch scheduled callbacks.",
        },
        "security": spec["security"],
        "paths": paths,
        "components": components,
    }
