"""The embedded mode's broker: kombu's filesystem transport, made safe for several processes.

kombu's own filesystem transport (5.7) has three races, each seen or reproduced here
(``tests/integration/test_embedded_broker.py``):

* ``_put`` creates ``<name>.msg`` in the queue folder and then writes it. A consumer
  that lists the folder in between reads an empty or half-written file and the worker
  dies with ``Unrecoverable error: JSONDecodeError`` (the flock the writer takes is
  advisory; the reader never asks for it).
* ``_get`` takes a message by ``shutil.move`` into the system temp folder. Across
  file systems that is copy-then-delete, not a rename: two consumers can both copy the
  same file, a message delivered twice.
* ``_queue_bind`` opens an exchange table with ``"wb"`` (truncating it) before it
  locks it, so a publisher reading the table at that instant reads an empty file.

Here every file is written under a temporary name and renamed into place (``rename`` is
atomic on POSIX within one file system), a consumer takes a message by renaming it into
its own folder on the same file system (exactly one rename wins), and a file that still
cannot be decoded (one left by an older version) is set aside and logged, never fatal.

Celery selects it with ``broker_transport = "embedded"`` (``worker.celery.config``); the
URL stays ``filesystem://``.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem, virtual
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

SUFFIX = ".msg"


def write_atomically(path: Path, data: bytes, temp_folder: Path) -> None:
    """Readers see the whole file or no file: write under a private name, then rename."""
    temp = temp_folder / f"{uuid.uuid4().hex}.part"
    try:
        with temp.open("wb") as f:
            f.write(data)
        # No fsync: the database is the source of truth; a message lost to a power cut is
        # recovered by the claim lease (README, "Crashes").
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


class Channel(filesystem.Channel):
    """Atomic writes, exactly-once takes, no fatal read."""

    @property
    def _options(self) -> dict[str, Any]:
        return self.transport_options

    @property
    def temp_folder(self) -> Path:
        return Path(self._options["temp_folder"])

    @property
    def taken_folder(self) -> Path:
        return Path(self._options["processed_folder"])

    @property
    def rejected_folder(self) -> Path:
        return Path(self._options["rejected_folder"])

    # messages

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000):015d}_{uuid.uuid4()}.{queue}{SUFFIX}"
        try:
            write_atomically(
                Path(self.data_folder_out) / name, dumps(payload).encode(), self.temp_folder
            )
        except OSError as exc:
            raise ChannelError(f"cannot add a message to {self.data_folder_out}") from exc

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        wanted = f"{queue}{SUFFIX}"
        folder = Path(self.data_folder_in)
        for name in sorted(os.listdir(folder)):
            if name.partition(".")[2] != wanted:
                continue
            taken = self.taken_folder / name
            try:
                # Exactly one consumer's rename succeeds; the others see it gone.
                os.rename(folder / name, taken)
            except FileNotFoundError:
                continue
            try:
                payload = taken.read_bytes()
            except OSError as exc:
                raise ChannelError(f"cannot read message {taken}") from exc
            try:
                message = loads(payload.decode())
            except ValueError:
                taken.replace(self.rejected_folder / name)
                log.error(
                    "broker: message file %s is not valid JSON; set aside in %s",
                    name,
                    self.rejected_folder,
                )
                continue
            taken.unlink()
            return message
        raise Empty()

    # exchange tables (which queues an exchange routes to)

    def _table_file(self, exchange: str) -> Path:
        # kombu's own check that the name cannot leave the control folder (untyped in 5.7).
        return self._exchange_file(exchange)  # type: ignore[attr-defined,no-any-return]

    def get_table(self, exchange: str) -> list[Any]:
        file = self._table_file(exchange)
        try:
            table = loads(file.read_text())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"cannot open {file}") from exc
        return [filesystem.exchange_queue_t(*q) for q in table]

    def _update_table(self, exchange: str, row: Any, *, add: bool) -> None:
        file = self._table_file(exchange)
        self.control_folder.mkdir(parents=True, exist_ok=True)
        # One writer at a time per table (read-modify-write); readers need no lock as the
        # table is replaced whole.
        with (self.control_folder / f"{exchange}.lock").open("a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            try:
                rows = self.get_table(exchange)
                if add and row not in rows:
                    rows.insert(0, row)
                elif not add and row in rows:
                    rows.remove(row)
                else:
                    return
                write_atomically(file, dumps(rows).encode(), self.temp_folder)
            finally:
                fcntl.flock(guard, fcntl.LOCK_UN)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str | None, queue: str) -> None:
        row = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            self._update_table(exchange, row, add=True)
        except OSError as exc:
            raise ChannelError(f"cannot bind {queue} to {exchange}") from exc

    def _delete(
        self, queue: str, exchange: str, routing_key: str, pattern: str, *args: Any, **kwargs: Any
    ) -> None:
        super(filesystem.Channel, self)._delete(
            queue, exchange, routing_key, pattern, *args, **kwargs
        )
        row = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            self._update_table(exchange, row, add=False)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise


class Transport(filesystem.Transport):
    Channel = Channel
    global_state = virtual.BrokerState()

    @property
    def default_connection_params(self) -> dict[str, Any]:
        # A folder has no host: without this kombu warns "No hostname was supplied" on
        # every connection.
        return {"port": self.default_port}


_FOLDERS = {
    "data_folder_in": "queue",
    "data_folder_out": "queue",
    "processed_folder": "taken",
    "rejected_folder": "rejected",
    "temp_folder": "tmp",
    "control_folder": "control",
}


def transport_options(folder: Path) -> dict[str, str]:
    """The folders, all on one file system so every rename is atomic (made by
    :func:`create_folders`, when an app is built to be used)."""
    folder = folder.resolve()
    return {key: str(folder / sub) for key, sub in _FOLDERS.items()}


def create_folders(folder: Path) -> None:
    for sub in set(_FOLDERS.values()):
        (folder.resolve() / sub).mkdir(parents=True, exist_ok=True)


POLLING_INTERVAL = 0.2
"""Seconds between looks at an empty queue folder (kombu's default: 1). A look is one
``listdir`` of a near-empty folder; a due callback's dispatch message waited up to 1 s."""


ALIAS = "embedded"
# kombu names a transport by its alias in what it prints ("Connected to embedded://").
TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:Transport")
TRANSPORT = ALIAS
