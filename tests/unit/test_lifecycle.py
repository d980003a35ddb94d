"""The named moves and the status table agree: every allowed transition has a move, and
no move makes a transition the table does not allow."""

from worker import lifecycle
from worker.status import ALLOWED, Status

TABLE = {(current, target) for current, targets in ALLOWED.items() for target in targets}


def _edges() -> set[tuple[Status | None, Status]]:
    return {edge for move in lifecycle.MOVES.values() for edge in move.edges}


def test_the_moves_make_exactly_the_transitions_the_status_table_allows() -> None:
    changes = {(a, b) for a, b in _edges() if a is not None and a != b}
    assert changes == TABLE


def test_only_creation_starts_a_callback_and_it_starts_scheduled() -> None:
    assert {(a, b) for a, b in _edges() if a is None} == {(None, Status.SCHEDULED)}
    assert lifecycle.MOVES["create"].edges == {(None, Status.SCHEDULED)}


def test_changes_within_a_status_happen_only_while_dispatching_or_as_an_edit() -> None:
    within = {name for name, m in lifecycle.MOVES.items() if any(a == b for a, b in m.edges)}
    outcome_moves = {"record_call_outcome", "postpone_outcome_pull"}
    assert within == {"start_attempts", "resend_same_key", "reschedule"} | outcome_moves
    assert all(
        a == b == Status.DISPATCHING
        for name in within - outcome_moves - {"reschedule"}
        for a, b in lifecycle.MOVES[name].edges
    )
    # An operator's edit (PATCH) stays scheduled: it changes no status.
    assert lifecycle.MOVES["reschedule"].edges == {(Status.SCHEDULED, Status.SCHEDULED)}
    # Issue 14: the call's outcome (and when to pull it) is all a dispatched callback takes.
    for name in outcome_moves:
        assert lifecycle.MOVES[name].edges == {(Status.DISPATCHED, Status.DISPATCHED)}


def test_every_move_is_public_and_registered() -> None:
    assert set(lifecycle.MOVES) <= set(lifecycle.__all__)
    assert all(callable(getattr(lifecycle, name)) for name in lifecycle.MOVES)
