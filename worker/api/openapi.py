"""The OpenAPI document served at ``/openapi.json``.

It is the platform's own published document (``spec/speko-openapi-excerpt.json``, a
verbatim copy of the platform's excerpt) cut down to ``/v1/callbacks*`` and the
components those paths use — not one generated from the routes: SDKs are generated from
the published document, so serving it verbatim is how the contract stays exact.

Our own additions (issue 16) live in ``spec/callbacks-extensions.json`` and are merged in
by :func:`served`, each marked ``x-extension``: the platform's part stays verbatim.
"""

from __future__ import annotations

import copy
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


# --- our extensions, merged beside the platform's paths (issue 16) ---------------------

EXTENSION = {"x-extension": "callbacks-worker"}
"""On every parameter, response and operation the extension document adds."""


@cache
def extensions() -> dict[str, Any]:
    """``spec/callbacks-extensions.json``: our own additions, kept apart from the excerpt."""
    text = files("worker.api").joinpath("spec/callbacks-extensions.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _marked(node: dict[str, Any]) -> dict[str, Any]:
    # A Reference Object takes no extension fields: mark only inline objects.
    return node if "$ref" in node else {**node, **EXTENSION}


@cache
def served() -> dict[str, Any]:
    """The document ``/openapi.json`` serves: :func:`document` (the platform's, verbatim)
    with the extension document merged in. The extension may add parameters and responses
    to a platform operation and new operations and components, never redefine one of the
    platform's (raises ``ValueError``: a mistake in the extension document)."""
    spec, ext = published(), extensions()
    out = copy.deepcopy(document())
    paths: dict[str, dict[str, Any]] = out["paths"]
    for path, operations in ext.get("x-extend-operations", {}).items():
        for method, added in operations.items():
            op = paths[path][method]
            names = {p.get("name") for p in op.get("parameters", [])}
            for param in added.get("parameters", []):
                if param.get("name") in names:
                    raise ValueError(f"extension redefines {method} {path} {param['name']}")
                op.setdefault("parameters", []).append(_marked(param))
            for code, response in added.get("responses", {}).items():
                op["responses"][code] = _marked(response)
    for path, operations in ext["paths"].items():
        for method, op in operations.items():
            if method in paths.get(path, {}):
                raise ValueError(f"extension redefines the platform's {method} {path}")
            paths.setdefault(path, {})[method] = _marked(op)
    components: dict[str, dict[str, Any]] = out["components"]
    for kind, named in ext["components"].items():
        for name, node in named.items():
            if name in spec["components"].get(kind, {}):
                raise ValueError(f"extension redefines the platform's {kind} {name}")
            components.setdefault(kind, {})[name] = _marked(node)
    pending, seen = _refs(paths) | _refs(components), set()
    while pending:
        ref = pending.pop()
        seen.add(ref)
        _, _, kind, name = ref.split("/")
        if name not in components.get(kind, {}):
            components.setdefault(kind, {})[name] = spec["components"][kind][name]
        pending |= _refs(components[kind][name]) - seen
    out["info"] = {
        **out["info"],
        "description": (
            "List, inspect, cancel, and dispatch scheduled callbacks (the platform's paths), "
            "and this service's extensions (marked x-extension): cursor pages and filters, "
            "create, and change a scheduled callback."
        ),
    }
    return out
