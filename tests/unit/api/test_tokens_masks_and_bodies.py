"""The API's small pure parts: token format, masking, header parsing, body rules."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError
from starlette.requests import Request

from worker.actions import actor_for, mask_number, storable
from worker.api.auth import bearer_token
from worker.api.routes.callbacks import CancelBody
from worker.apikeys import TOKEN_PREFIX, hash_token, new_token


def test_tokens_are_prefixed_random_and_hashed_with_sha256() -> None:
    a, b = new_token(), new_token()
    assert a.startswith(TOKEN_PREFIX)
    assert a != b
    assert len(a) == len(TOKEN_PREFIX) + 43  # 32 bytes, url-safe base64, no padding
    assert hash_token(a) == hashlib.sha256(a.encode()).hexdigest()


@pytest.mark.parametrize(
    ("number", "masked"),
    [("+12015551234", "********1234"), ("1234", "1234"), (None, "-"), ("", "-")],
)
def test_mask_number_keeps_only_the_last_four(number: str | None, masked: str) -> None:
    assert mask_number(number) == masked


def test_storable_refuses_what_postgresql_cannot_take() -> None:
    assert storable("cb_01abc")
    assert not storable("cb\x00")
    assert not storable("\udc80")


def test_actor_names_the_key() -> None:
    assert actor_for("key_1") == "api:key_1"


def request_with(authorization: str | None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return Request({"type": "http", "headers": headers})


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer sk_live_x", "sk_live_x"),
        ("bearer sk_live_x", "sk_live_x"),
        ("BEARER   sk_live_x  ", "sk_live_x"),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("sk_live_x", None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(request_with(header)) == token


def test_cancel_body_reason_is_optional_and_at_most_500_characters() -> None:
    assert CancelBody.model_validate({}).reason is None
    assert CancelBody.model_validate({"reason": "é" * 500}).reason == "é" * 500
    assert CancelBody.model_validate({"reason": "x", "other": 1}).reason == "x"
    bad: object
    for bad in ({"reason": "x" * 501}, {"reason": None}, {"reason": 5}, [], "x"):
        with pytest.raises(ValidationError):
            CancelBody.model_validate(bad)
