"""VerdictFeed: what the commit thread hands the OPC UA loop, in order, counted, bounded."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace

from inspector.opcua.feed import VerdictFeed
from tests.server.test_commit_isolation import record


def test_updates_keep_commit_order_and_count_per_station() -> None:
    feed = VerdictFeed()
    items = [record(f"P{i}", station="s1" if i % 2 else "s2",
                    verdict="fail" if i % 3 == 0 else "pass") for i in range(9)]
    feed.offer(items[:4])
    feed.offer(items[4:])
    out = feed.drain()
    assert [u.inspection_id for u in out] == [r.id for r in items]
    last_s1 = [u for u in out if u.station == "s1"][-1]
    s1 = [r for r in items if r.station == "s1"]
    assert (last_s1.pass_count, last_s1.fail_count) == (
        sum(r.verdict == "pass" for r in s1), sum(r.verdict == "fail" for r in s1))
    assert out[0].model == "tiny:1" and out[0].part_id == "P0"
    assert feed.drain() == []


def test_a_full_backlog_drops_the_oldest_but_counts_stay_right() -> None:
    feed = VerdictFeed(max_backlog=5)
    items = [record(f"P{i}", verdict="fail" if i < 3 else "pass") for i in range(12)]
    feed.offer(items)
    out = feed.drain()
    assert [u.inspection_id for u in out] == [r.id for r in items[-5:]]
    assert (out[-1].pass_count, out[-1].fail_count) == (9, 3)


def test_offer_wakes_the_loop_and_never_raises_once_it_is_closed() -> None:
    feed = VerdictFeed()
    loop = asyncio.new_event_loop()
    woken = threading.Event()
    feed.attach(lambda: loop.call_soon_threadsafe(woken.set))
    loop.call_soon(loop.stop)
    feed.offer([record("A")])
    loop.run_forever()
    assert woken.is_set()
    loop.close()
    feed.offer([record("B")])  # the loop is closed: no error reaches the commit thread
    assert [u.part_id for u in feed.drain()] == ["A", "B"]


def test_no_part_id_shows_as_empty_text() -> None:
    feed = VerdictFeed()
    feed.offer([replace(record(None), model_version="7")])
    (update,) = feed.drain()
    assert update.part_id == "" and update.model == "tiny:7"
