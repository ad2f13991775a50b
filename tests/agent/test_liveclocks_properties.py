"""Properties of the live clocks, whatever the moments they happen to wake at: every
card the clock issues is raised exactly once, at the first wake at or after it was
reached, and the queue always holds the case's next change."""

from __future__ import annotations

import sqlite3
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from clockfakes import TZ, Events, FakeClock, clock, deployment, feed, make_clocks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

START = datetime(2024, 3, 1, tzinfo=TZ)
ITEMS = ("fgw-001", "fgw-001-01", "jyj-001")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    accepted_minutes=st.integers(0, 20 * 24 * 60),
    item=st.sampled_from(ITEMS),
    suspension=st.none() | st.tuples(st.integers(0, 10 * 24 * 60), st.integers(1, 8)),
    wakes=st.lists(st.integers(1, 60 * 24 * 60), min_size=1, max_size=8),
)
def test_cards_are_raised_once_at_the_first_wake_after_them(
    accepted_minutes: int, item: str, suspension: tuple[int, int] | None, wakes: list[int]
) -> None:
    accepted = START + timedelta(minutes=accepted_minutes)
    event = Events()
    events = [event("accepted", accepted.strftime("%Y-%m-%d %H:%M"), item=item)]
    if suspension is not None:
        at = accepted + timedelta(minutes=suspension[0])
        events.append(
            event(
                "suspended",
                at.strftime("%Y-%m-%d %H:%M"),
                item=item,
                reason="hearing",
                days=suspension[1],
            )
        )
    limits = deployment().limits(item)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.db"
        now = FakeClock("2024-03-01")
        now.t = max(e.at.timestamp() for e in events)
        clocks = make_clocks(path, now)
        feed(clocks, path, *events)
        clocks.process_due()
        instants = sorted({now.t + 60 * m for m in wakes})
        woken_at = [now.t]
        for t in instants:
            now.t = t
            clocks.process_due()
            woken_at.append(t)
            state = clock().evaluate(events, limits, datetime.fromtimestamp(t, TZ))
            assert clocks.next_change() == state.next_change_ts
        conn = sqlite3.connect(path)
        raised = conn.execute(
            "SELECT level, reached_at, raised_at FROM clock_flags WHERE ref = ''"
            " ORDER BY reached_at, level"
        ).fetchall()
        conn.close()
    final = clock().evaluate(events, limits, datetime.fromtimestamp(instants[-1], TZ))
    # Yellow and red fall on one instant when the two limits are equal: compare as sets.
    assert sorted((lvl, ts) for lvl, ts, _ in raised) == sorted(
        (card.level, card.at.timestamp()) for card in final.cards
    )
    assert len(raised) == len(final.cards)
    for _, reached, raised_at in raised:
        assert raised_at == min(w for w in woken_at if w >= reached)
