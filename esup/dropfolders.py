"""Drop folders: the JSON Lines files workflow systems write for esup's agents.

    department_groups(deployment, size) -> {folder: (department, ...)}
    lay_out(groups, events, faults, zone) -> [DropFile, ...]
    write_files(files, out) -> iterator of WrittenFile, one per file, in time order

One folder per group of supervised departments (one agent each): the
departments of a category in configuration order, cut into groups of at
most `size`, named ``<category>-<n>``. In each folder, one file per local
working day that has events, ``events-YYYYMMDD.jsonl``, its lines in time
order. Files are written in time order across folders (day, then folder).

Two writer styles, as real workflow systems do it: ``rename`` (the
documented way) writes ``.<name>.tmp`` in the folder and renames it into place
when complete, so a reader never sees a partial file under its final name;
``append`` creates the file under its final name and appends to it in
several chunks, each ending at a line's end. One folder in three appends.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Final, Literal

from casework.config import CATEGORIES, Deployment
from casework.events import CaseEvent
from casework.wire import dumps_line
from esup.simfaults import Fault
from esup.simulator import SimulationError

__all__ = [
    "STYLES",
    "DropFile",
    "Style",
    "WrittenFile",
    "department_groups",
    "file_name",
    "lay_out",
    "temp_name",
    "write_files",
]

Style = Literal["rename", "append"]
STYLES: Final[tuple[Style, ...]] = ("rename", "append")
#: Lines per append when a file is appended in place.
APPEND_CHUNK: Final = 40


def file_name(day: date) -> str:
    """The name of a folder's file for a local day."""
    return f"events-{day:%Y%m%d}.jsonl"


def temp_name(name: str) -> str:
    """Where a ``rename`` writer writes `name` before renaming it into place."""
    return f".{name}.tmp"


def department_groups(deployment: Deployment, size: int = 8) -> dict[str, tuple[str, ...]]:
    """The supervised departments in folders of at most `size`, by category, balanced."""
    if size < 1:
        raise SimulationError(f"a group holds at least 1 department, not {size}")
    groups: dict[str, tuple[str, ...]] = {}
    supervised = deployment.supervised_departments()
    for category in CATEGORIES:
        codes = [d.code for d in supervised if d.category == category]
        if not codes:
            continue
        count = -(-len(codes) // size)
        for n in range(count):
            lo, hi = len(codes) * n // count, len(codes) * (n + 1) // count
            groups[f"{category}-{n + 1}"] = tuple(codes[lo:hi])
    return groups


def styles_of(groups: Iterable[str]) -> dict[str, Style]:
    """Each folder's writer style: one in three (the 2nd, 5th, ...) appends in place."""
    return {folder: ("append" if n % 3 == 1 else "rename") for n, folder in enumerate(groups)}


@dataclass(frozen=True, slots=True)
class Placed:
    """A faulty line's place: folder, file name and 1-based line number."""

    fault: Fault
    folder: str
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class DropFile:
    """One file to write: its folder, name, local day, writer style and lines."""

    folder: str
    name: str
    day: date
    style: Style
    lines: tuple[str, ...]
    events: int  # lines that are events of the planned cases (faults apart)
    placed: tuple[Placed, ...]

    @property
    def relative(self) -> str:
        return f"{self.folder}/{self.name}"


def lay_out(
    groups: dict[str, tuple[str, ...]], events: Iterable[CaseEvent], faults: Iterable[Fault]
) -> list[DropFile]:
    """The files of every folder, in writing order (day, then folder).

    `events` are the planned cases' events, each put in its department's folder
    and the file of its local day; `faults` go to the file of their own day.
    A department in no group is an error.
    """
    folder_of = {code: folder for folder, codes in groups.items() for code in codes}
    styles = styles_of(groups)
    order = {folder: n for n, folder in enumerate(groups)}
    slots: dict[tuple[date, str], list[tuple[datetime, int, str, Fault | None]]] = {}
    n = 0

    def put(department: str, day: date, at: datetime, text: str, fault: Fault | None) -> None:
        nonlocal n
        folder = folder_of.get(department)
        if folder is None:
            raise SimulationError(f"department {department!r} is in no drop-folder group")
        slots.setdefault((day, folder), []).append((at, n, text, fault))
        n += 1

    for event in events:
        put(event.department, event.at.date(), event.at, dumps_line(event), None)
    for fault in faults:
        # A redelivered line is re-exported the next day: it heads that day's file.
        at = (
            datetime.combine(fault.day, datetime.min.time(), fault.at.tzinfo)
            if (fault.day != fault.at.date())
            else fault.at
        )
        put(fault.department, fault.day, at, fault.text, fault)
    files = []
    for day, folder in sorted(slots, key=lambda k: (k[0], order[k[1]])):
        entries = sorted(slots[day, folder], key=lambda e: (e[0], e[1]))
        name = file_name(day)
        placed = tuple(
            Placed(fault, folder, name, line)
            for line, (_, _, _, fault) in enumerate(entries, 1)
            if fault is not None
        )
        files.append(
            DropFile(
                folder=folder,
                name=name,
                day=day,
                style=styles[folder],
                lines=tuple(text for _, _, text, _ in entries),
                events=len(entries) - len(placed),
                placed=placed,
            )
        )
    return files


@dataclass(frozen=True, slots=True)
class WrittenFile:
    """A file now in place: its path, and how many lines and bytes it holds."""

    file: DropFile
    path: Path
    lines: int
    size: int


def write_files(
    files: Iterable[DropFile],
    out: Path,
    *,
    before_rename: Callable[[Path, Path], None] | None = None,
) -> Iterator[WrittenFile]:
    """Write `files` under `out` (one sub-folder per folder), yielding each once in place.

    A ``rename`` file is written under `temp_name` and renamed with
    `os.replace` (`before_rename(temp, final)` is called in between, for tests
    that look at the folder then); an ``append`` file is created under its name
    and appended to in chunks of `APPEND_CHUNK` lines, each flushed. A file
    already there is replaced (rename) or appended to (append). UTF-8, ``\\n``
    line ends, every line complete.
    """
    for drop in files:
        folder = out / drop.folder
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / drop.name
        data = "".join(line + "\n" for line in drop.lines).encode("utf-8")
        if drop.style == "rename":
            temp = folder / temp_name(drop.name)
            try:
                with open(temp, "wb") as fh:
                    fh.write(data)
                if before_rename is not None:
                    before_rename(temp, path)
                os.replace(temp, path)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
        else:
            with open(path, "ab") as fh:
                for k in range(0, len(drop.lines), APPEND_CHUNK):
                    chunk = drop.lines[k : k + APPEND_CHUNK]
                    fh.write("".join(line + "\n" for line in chunk).encode("utf-8"))
                    fh.flush()
        yield WrittenFile(drop, path, len(drop.lines), len(data))
