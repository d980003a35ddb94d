"""Keep a set of named processes running, as systemd or the kubelet would in production.

A process that dies (SIGKILLed by a test, or exiting on its own) is started again by
``ensure_running``; each exit is recorded with its code, so a test can tell a kill it
made from a process that gave up by itself.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from tests.support.processes import Processes


@dataclass
class Exit:
    name: str
    code: int
    killed_by_us: bool


@dataclass
class Supervisor:
    procs: Processes
    commands: dict[str, tuple[str, ...]] = field(default_factory=dict)
    exits: list[Exit] = field(default_factory=list)
    _killing: set[str] = field(default_factory=set)

    def start(self, name: str, *argv: str) -> None:
        self.commands[name] = argv
        self.procs.start(name, *argv)

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` (it is started again by the next ``ensure_running``)."""
        proc = self.procs.running.get(name)
        if proc is not None and proc.poll() is None:
            self._killing.add(name)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def ensure_running(self, skip: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Start again every supervised process that has exited; return their names."""
        restarted = []
        for name, argv in self.commands.items():
            if name in skip:
                continue
            proc = self.procs.running.get(name)
            code = None if proc is None else proc.poll()
            if proc is not None and code is None:
                continue
            if proc is not None and code is not None:
                self.exits.append(Exit(name, code, killed_by_us=name in self._killing))
                self._killing.discard(name)
            self.procs.running.pop(name, None)
            self.procs.start(name, *argv)
            restarted.append(name)
        return restarted

    def exited_on_their_own(self) -> list[Exit]:
        return [e for e in self.exits if not e.killed_by_us]
