"""Voice messages (the ``record`` node), kept as far as they got whatever ends them.

While the caller speaks, the audio goes to ``CALL-KIND.wav.part`` (raw 8 kHz int16), written
through to the OS every ``FLUSH_FRAMES`` frames, and the ``recordings`` row exists with ``ms``
NULL. Finishing turns the part into the WAV, sets ``ms`` and adds the outbox item, in one
transaction. A node killed mid-message loses at most the last ``FLUSH_FRAMES`` frames: on its next
start :meth:`Recordings.recover` finishes every message left with ``ms`` NULL.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np

from drivers.audiofile import write_wav

from .store import Store

log = logging.getLogger("node_agent.recordings")
FLUSH_FRAMES = 10  # 200 ms of audio: what a kill -9 can cost a message


@dataclass
class Take:
    """One message being recorded."""

    row_id: int
    call_id: str
    kind: str
    path: Path
    file: BinaryIO
    frames: int = 0

    @property
    def part(self) -> Path:
        return _part(self.path)

    def write(self, frame: np.ndarray) -> None:
        """Append one frame (a page-cache write, cheap enough for the event loop)."""
        self.file.write(np.asarray(frame, dtype="<i2").tobytes())
        self.frames += 1
        if self.frames % FLUSH_FRAMES == 0:
            self.file.flush()  # in the kernel now: survives the process being killed


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


class Recordings:
    """The ``recordings`` table and ``DATA/recordings/``. What commits or writes whole files runs
    in a thread of its own: a caller hanging up mid-message is released once the message is
    kept, and that must not queue behind the PIN checks that fill the default worker threads."""

    def __init__(self, store: Store, folder: Path) -> None:
        self.store = store
        self.folder = folder
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recordings")

    async def begin(self, call_id: str, kind: str, caller_number: str) -> Take:
        return await asyncio.get_running_loop().run_in_executor(self._writer, self._begin, call_id, kind,
                                                                caller_number)

    async def finish(self, take: Take) -> int | None:
        """The message as a WAV, its row and its outbox item; returns its length in ms (None if
        the caller said nothing: then there is no message, no row and no file)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, self._finish_take, take)

    def _begin(self, call_id: str, kind: str, caller_number: str) -> Take:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{call_id}-{kind}.wav"
        file = _part(path).open("wb")
        with self.store.transaction() as db:
            row_id = db["recordings"].insert({"call_id": call_id, "kind": kind, "path": str(path), "ms": None,
                                              "caller_number": caller_number,
                                              "at": datetime.now().isoformat(timespec="seconds")}).last_pk
        return Take(row_id, call_id, kind, path, file)

    def _finish_take(self, take: Take) -> int | None:
        take.file.close()
        return self._finish(take.row_id, take.call_id, take.kind, take.path)

    def recover(self) -> int:
        """Finish the messages a previous run was recording when it died; returns how many. Run at
        start-up, before any call (off the event loop: it commits)."""
        rows = list(self.store.db.query("SELECT id, call_id, kind, path FROM recordings WHERE ms IS NULL"))
        for r in rows:
            ms = self._finish(r["id"], r["call_id"], r["kind"], Path(r["path"]))
            log.warning("call %s: %s message recovered after a stop of the node (%s ms)", r["call_id"], r["kind"], ms)
        return len(rows)

    def _finish(self, row_id: int, call_id: str, kind: str, path: Path) -> int | None:
        part = _part(path)
        try:
            raw = part.read_bytes()
        except FileNotFoundError:
            raw = b""
        pcm = np.frombuffer(raw[:len(raw) // 2 * 2], dtype="<i2")  # a write cut short leaves half a sample
        if len(pcm):
            write_wav(path, pcm)
            with path.open("rb") as f:
                os.fsync(f.fileno())  # the message is on disk before its row says it is there
        ms = len(pcm) // 8
        with self.store.transaction() as db:
            if ms:
                db["recordings"].update(row_id, {"ms": ms})
                self.store.enqueue(db, "recording", f"recording-{call_id}-{kind}",
                                   {"call_id": call_id, "kind": kind, "ms": ms})
            else:
                db["recordings"].delete(row_id)
        part.unlink(missing_ok=True)
        return ms or None
