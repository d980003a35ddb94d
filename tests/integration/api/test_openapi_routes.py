"""Every operation the app serves under /v1 is documented in the /openapi.json it serves
(and nothing is documented that it does not serve), with the same path parameters."""

from __future__ import annotations

import re
import warnings
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.testclient import TestClient


def _served(app: FastAPI) -> set[tuple[str, str]]:
    """What the app routes under /v1, as FastAPI itself lists it (its generated document,
    which the app does not serve: routes are walked through FastAPI's public API rather
    than its router internals)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # HEAD beside GET on /healthz: duplicate op ids
        generated = get_openapi(title="routes", version="0", routes=app.routes)
    return {
        (path, method)
        for path, operations in generated["paths"].items()
        if path.startswith("/v1/")
        for method in operations
    }


def test_every_v1_route_is_in_the_served_openapi_document(app: FastAPI, client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    documented = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    served = _served(app)
    assert served, "no /v1 routes found"
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"


def _resolved(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        _, _, kind, name = node["$ref"].split("/")
        node = document["components"][kind][name]
    return node


def test_documented_path_parameters_are_the_routes(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        in_path = set(re.findall(r"{(\w+)}", path))
        for method, op in operations.items():
            params = [_resolved(document, p) for p in op.get("parameters", [])]
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == in_path, (path, method)
