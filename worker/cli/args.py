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
