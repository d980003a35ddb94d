"""A bounded fuzz of what the schema-driven run does not generate: control characters and
encoded separators in paths, repeated and oddly written query parameters, deep nesting,
bodies over the limit, bytes that are not UTF-8. No request may answer 5xx or redirect;
every error is the ``{error, code}`` envelope."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.api.conftest import Keys, bearer
from tests.support.factories import make_callback
from worker.status import Status

# A failing example's 1 MB body would otherwise turn the report into a repr warning.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")

MAX_BODY = 64 * 1024
NASTY = [
    "\x00",
    "\n",
    "\r",
    "\t",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\ud800",
    "/",
    "\\",
    "%",
    "?",
    "#",
    " ",
]
nasty_text = st.text(
    alphabet=st.one_of(st.sampled_from(NASTY), st.characters(codec="utf-8")), max_size=20
) | st.text(max_size=8)

odd_number = st.sampled_from(
    ["1", "10", "100", "101", "0", "-1", "1_0", "+5", "05", " 5", "5 ", "5\n", "1e1", "0x10",
     "\uff15", "9" * 40, "", "1.0", "NaN"]
)  # fmt: skip

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), nasty_text)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nasty_text, inner, max_size=4),
    max_leaves=20,
)


def _encode_segment(text: str) -> str:
    # Percent-encode everything but unreserved characters, so the client sends it as is.
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def bodies(draw: Any) -> bytes:
    kind = draw(
        st.sampled_from(["empty", "json", "reason", "reason", "deep", "deep", "huge", "bytes"])
    )
    if kind == "empty":
        return b""
    if kind == "json":
        return json.dumps(draw(json_value)).encode("utf-8", "surrogatepass")
    if kind == "reason":
        return json.dumps({"reason": draw(nasty_text)}).encode("utf-8", "surrogatepass")
    if kind == "deep":
        depth: int = draw(st.sampled_from([32, 33, 1_000, 20_000]))
        opener: str
        closer: str
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return (opener * depth + "1" + closer * depth).encode()
    if kind == "huge":
        size: int = draw(st.sampled_from([MAX_BODY - 16, MAX_BODY + 1, 1_000_000]))
        return b'{"reason": "' + b"x" * size + b'"}'
    raw: bytes = draw(st.binary(max_size=200))
    return raw


OPERATIONS = [
    ("GET", "/v1/callbacks"),
    ("GET", "/v1/callbacks/{id}"),
    ("POST", "/v1/callbacks/{id}/cancel"),
    ("POST", "/v1/callbacks/{id}/cancel"),
    ("POST", "/v1/callbacks/{id}/cancel"),
    ("POST", "/v1/callbacks/{id}/dispatch"),
    ("GET", "/healthz"),
    ("HEAD", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
]
SUFFIXES = ["/", "%2F", "%2fcancel", "%5Cdispatch", "%00", "%0a", "%252F", "/..", "//"]
names = st.sampled_from(["limit", "status", "source_session_id", "x"])
values = odd_number | nasty_text | st.sampled_from([s.value for s in Status])
queries = st.lists(st.tuples(names, values), min_size=1, max_size=4)


@st.composite
def requests(draw: Any, ids: list[str]) -> dict[str, Any]:
    """A real operation with one hostile part (path, query, body, method), or with all
    of them at once: one hostile part at a time reaches the handler behind it."""
    focus = draw(st.sampled_from(["path", "query", "body", "body", "method", "all"]))
    hostile = {focus} if focus != "all" else {"path", "query", "body", "method"}
    method, template = draw(st.sampled_from(OPERATIONS))
    if "method" in hostile:
        method = draw(st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    some_id = draw(st.sampled_from(ids))
    suffix = ""
    if "path" in hostile:
        some_id = draw(st.just(some_id) | nasty_text.map(_encode_segment))
        suffix = draw(st.sampled_from(["", *SUFFIXES]))
    query = draw(queries) if "query" in hostile else []
    body = draw(bodies()) if "body" in hostile else draw(st.sampled_from([None, b"{}"]))
    qs = "&".join(f"{quote(n)}={_encode_segment(v)}" for n, v in query)
    key = draw(st.sampled_from(["good", "none", "garbage"])) if focus == "all" else "good"
    content_type = draw(st.sampled_from(["application/json", "text/plain", None]))
    return {
        "method": method,
        "url": template.format(id=some_id) + suffix + (f"?{qs}" if qs else ""),
        "key": key,
        "content_type": content_type if focus == "all" else "application/json",
        "body": body,
    }


@pytest.fixture
def ids(pg_sessions: sessionmaker[Session]) -> list[str]:
    # Many scheduled ones: a cancel or dispatch that gets through uses one up.
    with pg_sessions.begin() as s:
        return [make_callback(s, status).id for status in [*Status, *[Status.SCHEDULED] * 40]]


def test_no_request_answers_5xx_or_a_redirect(
    client: TestClient, keys: Keys, ids: list[str]
) -> None:
    @given(request=requests(ids))
    @settings(
        max_examples=400,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    def run(request: dict[str, Any]) -> None:
        headers = {
            "good": bearer(keys.a),
            "none": {},
            "garbage": {"Authorization": "Bearer \x7f"},
        }[request["key"]]
        if request["content_type"]:
            headers["Content-Type"] = request["content_type"]
        r = client.request(
            request["method"],
            request["url"],
            content=request["body"],
            headers=headers,
            follow_redirects=False,
        )
        assert r.status_code < 500, (request["url"], r.status_code, r.text)
        assert not 300 <= r.status_code < 400, (request["url"], r.headers)
        assert "location" not in r.headers
        if r.status_code >= 400 and request["method"] != "HEAD":
            body = r.json()
            assert set(body) == {"error", "code"}, body
            assert all(isinstance(v, str) and v for v in body.values()), body

    run()
