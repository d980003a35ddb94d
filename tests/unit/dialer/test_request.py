from datetime import UTC, datetime

from worker.db.models import Callback
from worker.dialer.request import dial_request


def _callback(**kw: object) -> Callback:
    base: dict[str, object] = {
        "id": "cb_1",
        "organization_id": "org_a",
        "to_number": "+12015551234",
        "scheduled_at": datetime(2026, 1, 1, tzinfo=UTC),
        "pipeline_config": {},
        "metadata_": {},
        "dispatch_round": 1,
    }
    return Callback(**{**base, **kw})


def test_minimal_request_carries_to_and_why() -> None:
    req = dial_request(_callback())
    assert req.idempotency_key == "cb_1.1"
    assert req.body["to"] == "+12015551234"
    assert "from" not in req.body
    assert "agentId" not in req.body
    assert req.body["metadata"]["callback_id"] == "cb_1"
    assert req.body["metadata"]["organization_id"] == "org_a"
    assert set(req.body["metadata"]) >= {
        "source_session_id",
        "phone_number_id",
        "reason",
        "instructions",
        "summary",
    }


def test_pipeline_config_passes_only_dial_fields_and_metadata_merges() -> None:
    req = dial_request(
        _callback(
            from_number="+12015550000",
            agent_id="agent_1",
            reason="asked for a callback",
            pipeline_config={"voice": "v", "telephony": {"region": "us"}, "secret": "no"},
            metadata_={"crm": 42, "callback_id": "spoofed"},
            dispatch_round=3,
        )
    )
    assert req.body["from"] == "+12015550000"
    assert req.body["agentId"] == "agent_1"
    assert req.body["voice"] == "v"
    assert req.body["telephony"] == {"region": "us"}
    assert "secret" not in req.body
    assert req.body["metadata"]["crm"] == 42
    assert req.body["metadata"]["callback_id"] == "cb_1"
    assert req.body["metadata"]["reason"] == "asked for a callback"
    assert req.idempotency_key == "cb_1.3"
