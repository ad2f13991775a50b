"""Case events: the domain record the clock reads.

`CaseEvent` is the validated, typed form of one wire-format v1 event (see
docs/design.md, "Events"). The wire format itself -- JSON parsing, field rules
and error messages -- lives in `casework.wire`; everything after validation
works on `CaseEvent`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

EventType = Literal[
    "accepted", "suspended", "resumed", "extended", "step", "completed", "withdrawn"
]
EVENT_TYPES: Final[tuple[str, ...]] = (
    "accepted",
    "suspended",
    "resumed",
    "extended",
    "step",
    "completed",
    "withdrawn",
)
SUSPEND_REASONS: Final[tuple[str, ...]] = (
    "hearing",
    "tender",
    "auction",
    "inspection",
    "testing",
    "quarantine",
    "appraisal",
    "expert_review",
    "supplement",
    "other",
)
RESULTS: Final[tuple[str, ...]] = ("approved", "denied", "answered", "other")

#: Order of event types that share one instant: a case is accepted before
#: anything else happens to it, and a same-instant suspend/resume pair stays a pair.
TYPE_RANK: Final[dict[str, int]] = {t: i for i, t in enumerate(EVENT_TYPES)}


@dataclass(frozen=True, slots=True)
class CaseEvent:
    """One validated case event.

    `at` is timezone-aware. `days` is the requested working days on
    ``suspended`` and the added working days on ``extended``. `extra` keeps
    unknown wire fields (kept, ignored).
    """

    event_id: str
    case_id: str
    department: str
    item: str
    type: EventType
    at: datetime
    seq: int | None = None
    promised_days: int | None = None
    legal_days: int | None = None
    reason: str | None = None
    days: int | None = None
    step: str | None = None
    handler: str | None = None
    step_days: int | None = None
    result: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    #: `at` as a POSIX timestamp, computed once: the clock reads it on every evaluation.
    ts: float = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.at.utcoffset() is None:
            raise ValueError(f"event {self.event_id!r}: 'at' {self.at} has no UTC offset")
        object.__setattr__(self, "ts", self.at.timestamp())

    @property
    def case_key(self) -> tuple[str, str]:
        """(department, case_id): what identifies a case."""
        return (self.department, self.case_id)
