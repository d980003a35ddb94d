"""Issue 11, item 16: every command describes itself, every flag says what it is for,
required flags say so, and `run --help` says it also serves the API."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from worker.cli.main import parser


def _commands(
    p: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _commands(sub, (*path, name))


def test_every_command_has_a_description_and_every_flag_a_help_text() -> None:
    found = list(_commands(parser()))
    assert len(found) >= 14
    for path, command in found:
        assert command.description, f"callbacks {' '.join(path)} has no description"
        for action in command._actions:
            if action.dest != "help" and not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"callbacks {' '.join(path)} {action.option_strings}"


def test_schedule_help_says_which_flags_are_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["schedule", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "required (unless --file):" in text
    for flag in ("--org ORG organization id (required)", "--to E164", "--at ISO8601"):
        assert flag in text
    assert "`-`: standard input" in text


def test_run_help_says_it_also_serves_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "also serves the admin API" in text


@pytest.mark.parametrize(
    "args",
    [
        ["api-key", "create", "--org", ""],
        ["org-window", "show", "--org", " "],
        ["org-pacing", "set", "--org", "", "--max-concurrent", "1"],
        ["schedule", "--org", ""],
    ],
)
def test_an_empty_org_is_refused_by_every_command(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(args)
    assert exit_.value.code == 2
    assert "argument --org: must not be empty" in capsys.readouterr().err
