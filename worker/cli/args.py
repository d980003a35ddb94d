"""Argument helpers shared by the CLI's commands."""

from __future__ import annotations

import argparse
from typing import Any

ORG_MAX = 128


def organization(value: str) -> str:
    """``--org``: what ``schedule`` accepts for ``organization_id`` (validation.Ident:
    1-128 characters, trimmed), for every command that takes an organization."""
    value = value.strip()
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    if len(value) > ORG_MAX:
        raise argparse.ArgumentTypeError(f"at most {ORG_MAX} characters")
    return value


def add_command(sub: Any, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    """A subcommand with a one-line summary (in ``callbacks --help``) and a description."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=description)
    return parser


ORG_HELP = "the organization (required)"


def org_set_show(
    sub: Any,
    name: str,
    command: tuple[str, str],
    set_help: tuple[str, str],
    show_help: tuple[str, str],
) -> argparse.ArgumentParser:
    """``callbacks NAME set|show --org ORG``, the shape of every per-organization setting
    (``org-window``, ``org-pacing``, ``org-redial``); each help is (summary, description).
    Returns the ``set`` parser, for the command's own flags."""
    parser = add_command(sub, name, *command)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    set_parser = add_command(actions, "set", *set_help)
    set_parser.add_argument("--org", required=True, type=organization, help=ORG_HELP)
    show = add_command(actions, "show", *show_help)
    show.add_argument("--org", required=True, type=organization, help=ORG_HELP)
    return set_parser
