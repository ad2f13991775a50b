"""Reading a case's life: the one-pass reader must agree with the ordered walk."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta

from casebuilder import TZ
from hypothesis import given
from hypothesis import strategies as st

from casework.caselife import simple_life, walk_life
from casework.events import EVENT_TYPES, CaseEvent

START = datetime(2024, 3, 4, 9, 0, tzinfo=TZ)


@st.composite
def event_lists(draw: st.DrawFn) -> list[CaseEvent]:
    """Mostly orderly cases (acceptance, steps, extensions, procedures, a close),
    sometimes with an event of any type at any time thrown in."""
    at = START
    events = [CaseEvent("e0", "c", "d", "i", "accepted", at)]
    suspended = False
    for i in range(1, draw(st.integers(1, 7))):
        at += timedelta(hours=draw(st.integers(0, 24 * 5)))
        kind = draw(st.sampled_from(["step", "extended", "resumed" if suspended else "suspended"]))
        suspended = kind == "suspended" or (suspended and kind != "resumed")
        events.append(event(f"e{i}", kind, at, draw))
    if draw(st.booleans()):
        at += timedelta(hours=draw(st.integers(0, 24 * 5)))
        events.append(event("z", draw(st.sampled_from(["completed", "withdrawn"])), at, draw))
    if draw(st.integers(0, 3)) == 0:  # a contradiction, perhaps
        at = START + timedelta(hours=draw(st.integers(-24, 24 * 30)))
        events.append(event("x", draw(st.sampled_from(EVENT_TYPES)), at, draw))
    return events


def event(event_id: str, kind: str, at: datetime, draw: st.DrawFn) -> CaseEvent:
    fields: dict[str, object] = {}
    if kind in ("suspended", "extended"):
        fields["days"] = draw(st.integers(1, 10))
    if kind == "suspended":
        fields["reason"] = "hearing"
    return CaseEvent(event_id, "c", "d", "i", kind, at, **fields)  # type: ignore[arg-type]


@given(event_lists(), st.randoms(use_true_random=False), st.integers(-24, 24 * 40))
def test_the_one_pass_reader_agrees_with_the_walk(
    events: list[CaseEvent], rnd: random.Random, hours: int
) -> None:
    # Shuffle, deliver some events twice, and sometimes resend one with other content.
    mixed = events + rnd.sample(events, k=rnd.randint(0, len(events)))
    if rnd.random() < 0.2:
        victim = rnd.choice(events)
        mixed.append(replace(victim, at=victim.at + timedelta(hours=1)))
    rnd.shuffle(mixed)
    now = (START + timedelta(hours=hours)).timestamp()
    simple = simple_life(mixed, now)
    if simple is None:
        return
    accepted, close_ts, outcome, open_susp, susps, exts, anomalies = walk_life(mixed, now)
    assert simple[:4] == (accepted, close_ts, outcome, open_susp)
    assert (list(simple[4]), list(simple[5]), list(simple[6])) == (susps, exts, anomalies)


def test_the_one_pass_reader_takes_the_common_cases() -> None:
    accepted = CaseEvent("a", "c", "d", "i", "accepted", START)
    step = CaseEvent("s", "c", "d", "i", "step", START + timedelta(hours=1), step="审查")
    susp = CaseEvent(
        "p", "c", "d", "i", "suspended", START + timedelta(days=1), days=3, reason="testing"
    )
    back = CaseEvent("r", "c", "d", "i", "resumed", START + timedelta(days=2))
    done = CaseEvent("z", "c", "d", "i", "completed", START + timedelta(days=9))
    now = (START + timedelta(days=30)).timestamp()
    life = simple_life([done, back, step, accepted, susp, step], now)
    assert life is not None
    assert life[:3] == (accepted, done.ts, "completed")
    assert list(life[4]) == [(susp.ts, back.ts, susp)]
    # A contradiction is left to the walk, which reports it.
    assert simple_life([accepted, back], now) is None
    assert simple_life([accepted, replace(step, at=START - timedelta(hours=1))], now) is None
