"""The drop-folder source: JSON Lines (or CSV) files that a workflow system writes.

    DropFolder(config, conn, outbox, departments, clock=..., zone=...)
      start(wake)   watchdog notifications (or its polling observer) call `wake`
      poll()        read what is new in every file; move finished files to done/
      close()

The file protocol (docs/agent.md says it for writers):

- A file is read only up to its last newline: a half-written line waits.
- A file is identified by its fingerprint, a SHA-256 of its first line (of
  its header and first row for CSV), at most `FINGERPRINT_BYTES` bytes; not by
  its name or inode. A file is read from the offset recorded for its
  fingerprint, so a file replaced by another of the same name is read from
  the start, and the same file dropped again is not read twice. A file whose
  first line is not complete yet waits. A file shorter than the offset
  recorded for it was rewritten: it is read again from the start (the server
  answers ``duplicate`` for what it had).
- The offset and line count of a file are written in the same transaction
  as the events of the lines up to it.
- A file is finished when it has been read to its end (which is a newline)
  and has not changed for `finish_after_seconds`; it then moves to ``done/``
  (a name already there gets a ``.1``, ``.2``... suffix). Writers that
  rename a complete file in may run with 0; writers that append in place
  need the quiet period to be longer than their pauses.
- A bad line (malformed JSON, a missing or wrong field, a department that
  is not the agent's) goes to ``rejected/<file>.rejected.jsonl`` as
  ``{"line": n, "reason": ..., "text": ...}`` and is counted; the good lines
  of the same file go on. An unknown item is forwarded: the server is the
  authority on the catalog and quarantines it. A rejected line is written
  before the transaction commits, so a crash may repeat one, never lose one.
- What was read of a file is remembered until `forget_after_days` after its
  last read, once it is gone from the folder (`done/` is not looked at).
- Hidden and temporary names (``.x``, ``~x``, ``*.tmp``, ``*.part``) and
  names that match none of `patterns` are left alone.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from agent.config import DropFolderConfig
from agent.outbox import Outbox
from agent.sources.mapping import event_from_row
from agent.statedb import transaction
from casework.errors import EventError
from casework.events import CaseEvent
from casework.wire import parse_json_line

__all__ = ["CHUNK_BYTES", "FINGERPRINT_BYTES", "DropFolder", "fingerprint"]

logger = logging.getLogger(__name__)

#: At most this many bytes of a file's head make its fingerprint.
FINGERPRINT_BYTES: Final = 4096
#: Bytes read per transaction (whole lines; a longer line is read whole).
CHUNK_BYTES: Final = 1 << 20
#: How often files read long ago are forgotten, in seconds.
FORGET_EVERY_SECONDS: Final = 3600.0
#: At most this many files share one transaction.
FILES_PER_COMMIT: Final = 1000
_TEMPORARY: Final = (".tmp", ".part", ".partial", ".swp")
_BOM: Final = b"\xef\xbb\xbf"


def fingerprint(path: Path, lines: int = 1) -> str | None:
    """The hex SHA-256 of the file's first `lines` lines, or of its first
    `FINGERPRINT_BYTES` bytes when they hold fewer; None while neither is complete."""
    with path.open("rb") as handle:
        head = handle.read(FINGERPRINT_BYTES)
    end = -1
    for _ in range(lines):
        end = head.find(b"\n", end + 1)
        if end < 0:
            break
    if end >= 0:
        head = head[: end + 1]
    elif len(head) < FINGERPRINT_BYTES:
        return None
    return hashlib.sha256(head).hexdigest()


@dataclass(slots=True)
class _Seen:
    """What the last look at a file found (in memory only)."""

    size: int
    mtime_ns: int
    since: float  # when size or mtime last changed, by the source's clock
    fingerprint: str | None = None
    offset: int = 0
    lines: int = 0
    warned_partial: bool = False


@dataclass(slots=True)
class _Pending:
    """A chunk of one file read and parsed, waiting for its transaction."""

    name: str
    seen: _Seen
    size: int
    consumed: int
    offset: int
    lines: int
    good: list[CaseEvent]
    raws: list[str | None]
    rejected: int


class DropFolder:
    """Reads the files of one drop folder into the outbox; see the module docstring.

    `conn` is the state database connection of this source's thread;
    `departments` the codes the agent reports for; `clock` gives unix seconds.
    """

    def __init__(
        self,
        config: DropFolderConfig,
        conn: sqlite3.Connection,
        outbox: Outbox,
        departments: Collection[str],
        *,
        clock: Callable[[], float] = time.time,
        zone: ZoneInfo | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self.config = config
        self.name = config.name
        self.conn = conn
        self.outbox = outbox
        self.departments = frozenset(departments)
        self.clock = clock
        self.zone = zone or ZoneInfo("Asia/Shanghai")
        self.chunk_bytes = chunk_bytes
        self.path = config.path
        self.done_dir = self.path / "done"
        self.rejected_dir = self.path / "rejected"
        for folder in (self.path, self.done_dir, self.rejected_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.last_event_at: float | None = None
        self.events_read = 0
        self.events_rejected = 0
        self.files_done = 0
        self._seen: dict[str, _Seen] = {}
        self._observer: Any = None
        self._next_forget = 0.0

    @property
    def interval(self) -> float:
        """Seconds between rescans when no notification arrives."""
        return self.config.rescan_seconds

    # -- notifications ----------------------------------------------------------------

    def start(self, wake: Callable[[], None]) -> None:
        """Watch the folder (inotify and the like, or polling by config); each change wakes."""
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        class _Wake(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                wake()

        observer = PollingObserver() if self.config.polling else Observer()
        observer.schedule(_Wake(), str(self.path), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    # -- reading ----------------------------------------------------------------------

    def _wanted(self, name: str) -> bool:
        if name.startswith((".", "~")) or name.endswith(_TEMPORARY):
            return False
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.config.patterns)

    def _is_csv(self, name: str) -> bool:
        return self.config.csv is not None and name.lower().endswith(".csv")

    def poll(self) -> bool:
        """Read every file's new complete lines, finish quiet files; True when more is
        waiting at once (a file had more than a chunk). Reads nothing while the outbox is
        full. The lines of many small files share one transaction, up to a chunk's bytes."""
        if self.outbox.paused():
            return False
        try:
            entries = sorted(
                (e for e in os.scandir(self.path) if self._wanted(e.name) and e.is_file()),
                key=lambda e: e.name,
            )
        except FileNotFoundError:
            logger.error("drop folder %s: the folder %s is missing", self.name, self.path)
            return False
        present = {e.name for e in entries}
        for name in list(self._seen):
            if name not in present:
                del self._seen[name]
        more = False
        pending: list[_Pending] = []
        budget = 0
        for entry in entries:
            if self.outbox.size_bytes() + budget >= self.outbox.cap_bytes():
                more = False  # at the cap: the rest waits for delivery to make room
                break
            try:
                item = self._visit(entry.name)
            except FileNotFoundError:
                self._seen.pop(entry.name, None)  # moved away meanwhile
                continue
            if item is None:
                continue
            more |= item.offset < item.size
            pending.append(item)
            budget += item.consumed
            if budget >= self.chunk_bytes or len(pending) >= FILES_PER_COMMIT:
                self._commit(pending)
                pending, budget = [], 0
        self._commit(pending)
        now = self.clock()
        if now >= self._next_forget:
            self._next_forget = now + FORGET_EVERY_SECONDS
            self._forget(now)
        return more

    def _forget(self, now: float) -> None:
        """Drop what is remembered of files gone from the folder and not read for
        `forget_after_days`: the same file dropped again after that is read again."""
        cutoff = now - self.config.forget_after_days * 86_400
        rows = self.conn.execute(
            "SELECT fingerprint, name FROM dropfolder_files WHERE source = ? AND updated_at < ?",
            (self.name, cutoff),
        ).fetchall()
        stale = [(self.name, fp) for fp, name in rows if name not in self._seen]
        if stale:
            with transaction(self.conn):
                self.conn.executemany(
                    "DELETE FROM dropfolder_files WHERE source = ? AND fingerprint = ?", stale
                )
            logger.info("drop folder %s: forgot %d file(s) read long ago", self.name, len(stale))

    def _visit(self, name: str) -> _Pending | None:
        """A file's next chunk of lines, read and parsed but not committed; None when it has
        none (it may be finished then)."""
        path = self.path / name
        stat = path.stat()
        now = self.clock()
        seen = self._seen.get(name)
        if seen is None or (seen.size, seen.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            seen = self._refresh(name, path, stat.st_size, stat.st_mtime_ns, seen, now)
            if seen is None:
                return None
        if seen.fingerprint is None:
            return None
        if seen.offset < stat.st_size:
            item = self._read(name, path, seen, stat.st_size)
            if item is not None:
                return item
        if seen.offset >= stat.st_size:
            if now - seen.since >= self.config.finish_after_seconds:
                self._finish(name, path)
        elif not seen.warned_partial and now - seen.since >= self.config.finish_after_seconds:
            seen.warned_partial = True
            logger.warning(
                "drop folder %s: %s ends with a line without a newline and has not grown for"
                " %g s; the line is read once the writer ends it with a newline",
                self.name,
                name,
                self.config.finish_after_seconds,
            )
        return None

    def _commit(self, pending: list[_Pending]) -> None:
        """The events and new offsets of `pending` in one transaction; then finish the files
        read to their end that may be finished."""
        if not pending:
            return
        now = self.clock()
        with transaction(self.conn):
            queued = self.outbox.put(
                self.conn,
                self.name,
                [e for item in pending for e in item.good],
                [r for item in pending for r in item.raws],
            )
            self.conn.executemany(
                "INSERT INTO dropfolder_files"
                " (source, fingerprint, name, offset, lines, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source, fingerprint) DO UPDATE SET"
                " name = excluded.name, offset = excluded.offset, lines = excluded.lines,"
                " updated_at = excluded.updated_at",
                [(self.name, i.seen.fingerprint, i.name, i.offset, i.lines, now) for i in pending],
            )
        self.outbox.committed(queued)
        for item in pending:
            item.seen.offset, item.seen.lines = item.offset, item.lines
            self.events_read += len(item.good)
            self.events_rejected += item.rejected
            if item.good:
                self.last_event_at = now
            quiet = now - item.seen.since >= self.config.finish_after_seconds
            if item.offset >= item.size and quiet:
                try:
                    self._finish(item.name, self.path / item.name)
                except FileNotFoundError:
                    self._seen.pop(item.name, None)

    def _refresh(
        self, name: str, path: Path, size: int, mtime_ns: int, seen: _Seen | None, now: float
    ) -> _Seen | None:
        """A changed or new file: its fingerprint, and where reading stands for it."""
        print_ = fingerprint(path, 2 if self._is_csv(name) else 1)
        if print_ is None:  # its first line is not complete yet
            self._seen[name] = _Seen(size, mtime_ns, now)
            return None
        if seen is None or seen.fingerprint != print_:
            row = self.conn.execute(
                "SELECT offset, lines FROM dropfolder_files WHERE source = ? AND fingerprint = ?",
                (self.name, print_),
            ).fetchone()
            offset, lines = (int(row[0]), int(row[1])) if row else (0, 0)
            seen = _Seen(size, mtime_ns, now, print_, offset, lines)
        else:
            seen.size, seen.mtime_ns, seen.since = size, mtime_ns, now
        if seen.offset > size:
            # Shorter than what was read of it: rewritten with the same first line. Read it
            # again from the start; what was sent before comes back as duplicates.
            logger.warning(
                "drop folder %s: %s is shorter (%d bytes) than the %d bytes read of it before;"
                " reading it again from the start",
                self.name,
                name,
                size,
                seen.offset,
            )
            seen.offset, seen.lines = 0, 0
        self._seen[name] = seen
        return seen

    def _chunk(self, path: Path, offset: int) -> bytes:
        """Whole lines from `offset`: about `chunk_bytes`, more when one line is longer."""
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(self.chunk_bytes)
            cut = data.rfind(b"\n")
            while cut < 0:
                more = handle.read(self.chunk_bytes)
                if not more:
                    return b""
                data += more
                cut = data.rfind(b"\n")
        return data[: cut + 1]

    def _read(self, name: str, path: Path, seen: _Seen, size: int) -> _Pending | None:
        """The next chunk of complete lines of a file, parsed; rejected lines written aside."""
        data = self._chunk(path, seen.offset)
        if not data:
            return None
        if seen.offset == 0 and data.startswith(_BOM):
            data = data[len(_BOM) :]
            consumed = len(data) + len(_BOM)
        else:
            consumed = len(data)
        texts = data.split(b"\n")[:-1]
        good: list[CaseEvent] = []
        raws: list[str | None] = []
        bad: list[dict[str, object]] = []
        if self._is_csv(name):
            self._parse_csv(name, path, seen.lines, texts, good, bad)
            raws = [None] * len(good)
        else:
            self._parse_jsonl(name, seen.lines, texts, good, raws, bad)
        if bad:
            self._write_rejected(name, bad)
        return _Pending(
            name=name,
            seen=seen,
            size=size,
            consumed=consumed,
            offset=seen.offset + consumed,
            lines=seen.lines + len(texts),
            good=good,
            raws=raws,
            rejected=len(bad),
        )

    def _check(self, event: CaseEvent) -> CaseEvent:
        if event.department not in self.departments:
            raise EventError(
                "is not one of this agent's departments ("
                + ", ".join(sorted(self.departments))
                + ")",
                field="department",
                value=event.department,
            )
        return event

    def _parse_jsonl(
        self,
        name: str,
        before: int,
        texts: list[bytes],
        good: list[CaseEvent],
        raws: list[str | None],
        bad: list[dict[str, object]],
    ) -> None:
        for number, text in enumerate(texts, start=before + 1):
            if not text or text.isspace():
                continue
            try:
                good.append(self._check(parse_json_line(text, source=name, line=number)))
            except EventError as exc:
                bad.append(_rejected(number, exc, text))
            else:
                raws.append(text.decode("utf-8").strip())

    def _parse_csv(
        self,
        name: str,
        path: Path,
        before: int,
        texts: list[bytes],
        good: list[CaseEvent],
        bad: list[dict[str, object]],
    ) -> None:
        mapping = self.config.csv
        assert mapping is not None  # _is_csv
        with path.open("rb") as handle:
            first = handle.readline().removeprefix(_BOM).decode("utf-8", "replace")
        header = next(csv.reader([first.rstrip("\r\n")], delimiter=mapping.delimiter))
        for number, text in enumerate(texts, start=before + 1):
            if number == 1 or not text or text.isspace():
                continue  # the header row
            try:
                cells = next(
                    csv.reader([text.decode("utf-8").rstrip("\r")], delimiter=mapping.delimiter)
                )
                if len(cells) != len(header):
                    raise EventError(
                        f"the row has {len(cells)} cells and the header {len(header)}",
                        source=name,
                        line=number,
                    )
                row = dict(zip(header, cells, strict=True))
                event = event_from_row(
                    row, mapping.columns, mapping.constants, self.zone, source=name, line=number
                )
                good.append(self._check(event))
            except UnicodeDecodeError:
                bad.append(_rejected(number, EventError("text is not valid UTF-8"), text))
            except EventError as exc:
                bad.append(_rejected(number, exc, text))

    def _write_rejected(self, name: str, bad: list[dict[str, object]]) -> None:
        target = self.rejected_dir / f"{name}.rejected.jsonl"
        with target.open("a", encoding="utf-8") as handle:
            for record in bad:
                handle.write(json.dumps({"file": name, **record}, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        logger.warning(
            "drop folder %s: %d line(s) of %s rejected, first at line %s: %s; see %s",
            self.name,
            len(bad),
            name,
            bad[0]["line"],
            bad[0]["reason"],
            target,
        )

    def _finish(self, name: str, path: Path) -> None:
        target = self.done_dir / name
        suffix = 0
        while target.exists():
            suffix += 1
            target = self.done_dir / f"{name}.{suffix}"
        os.rename(path, target)
        self._seen.pop(name, None)
        self.files_done += 1
        logger.info("drop folder %s: %s finished, moved to %s", self.name, name, target)


def _rejected(number: int, exc: EventError, text: bytes) -> dict[str, object]:
    return {
        "line": number,
        "reason": exc.reason,
        "text": text.decode("utf-8", "replace").rstrip("\r"),
    }
