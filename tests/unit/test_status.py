from itertools import product

import pytest

from worker.status import (
    ALLOWED,
    FINAL,
    Status,
    TransitionNotAllowed,
    can_transition,
    check_transition,
)

EXPECTED_ALLOWED = {
    (Status.SCHEDULED, Status.DISPATCHING),
    (Status.SCHEDULED, Status.CANCELLED),
    (Status.DISPATCHING, Status.DISPATCHED),
    (Status.DISPATCHING, Status.FAILED),
    (Status.DISPATCHING, Status.SCHEDULED),
    (Status.FAILED, Status.DISPATCHING),
}


@pytest.mark.parametrize(("current", "target"), list(product(Status, Status)))
def test_every_pair_is_allowed_exactly_when_the_model_says(current: Status, target: Status) -> None:
    allowed = (current, target) in EXPECTED_ALLOWED
    assert can_transition(current, target) is allowed
    if allowed:
        check_transition(current, target)
    else:
        with pytest.raises(TransitionNotAllowed) as err:
            check_transition(current, target)
        assert err.value.current is current


def test_final_statuses_are_dispatched_and_cancelled() -> None:
    assert {Status.DISPATCHED, Status.CANCELLED} == FINAL
    assert all(not ALLOWED[s] for s in FINAL)


def test_status_values_are_the_apis_five() -> None:
    assert [s.value for s in Status] == [
        "scheduled",
        "dispatching",
        "dispatched",
        "cancelled",
        "failed",
    ]
