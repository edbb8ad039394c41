"""RetryPolicy and AdaptiveLimit on their own: exact numbers, no HTTP, milliseconds."""
from __future__ import annotations

import threading
import time

import pytest

from conftest import FakeClock
from convai_sync import retry
from convai_sync.retry import AdaptiveLimit, RetryPolicy


@pytest.fixture
def top_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full jitter drawn at its upper bound, so the bound itself is visible."""
    monkeypatch.setattr(retry.random, "uniform", lambda low, high: (low, high))


def test_retry_after_is_waited_exactly_clamped_to_zero_and_the_total_budget() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=5.0, max_total=60.0)
    assert policy.delay(0, 2.5) == 2.5
    assert policy.delay(7, 2.5) == 2.5          # the server's word beats the backoff
    assert policy.delay(0, -3.0) == 0.0
    assert policy.delay(0, 600.0) == 60.0
    assert policy.delay(0, 0.0) == 0.0


def test_backoff_doubles_from_base_delay_with_full_jitter_up_to_max_delay(top_of_range: None) -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=5.0)
    assert [policy.delay(a, None) for a in (0, 1, 2, 3)] == [(0, 0.1), (0, 0.2), (0, 0.4), (0, 0.8)]
    assert policy.delay(6, None) == (0, 5.0)    # 6.4 capped
    assert policy.delay(30, None) == (0, 5.0)


def test_default_policy_numbers() -> None:
    assert RetryPolicy() == RetryPolicy(max_attempts=8, base_delay=0.1, max_delay=5.0, max_total=60.0)


def test_limit_starts_at_its_maximum_which_is_at_least_one() -> None:
    assert (AdaptiveLimit(8).maximum, AdaptiveLimit(8).limit) == (8, 8.0)
    assert (AdaptiveLimit(0).maximum, AdaptiveLimit(0).limit) == (1, 1.0)
    assert (AdaptiveLimit(-3).maximum, AdaptiveLimit(1).maximum) == (1, 1)
    fresh = AdaptiveLimit(4)
    assert (fresh.cuts, fresh.throttled) == (0, 0)


def _acquired_within(limit: AdaptiveLimit, seconds: float) -> bool:
    done = threading.Event()
    threading.Thread(target=lambda: (limit.acquire(), done.set()), daemon=True).start()
    return done.wait(seconds)


def test_acquire_blocks_at_the_limit_until_a_release() -> None:
    limit = AdaptiveLimit(2)
    limit.acquire()
    limit.acquire()
    assert not _acquired_within(limit, 0.1)     # a third request waits
    limit.release()                             # ... until one finishes
    time.sleep(0.05)
    assert limit._inflight == 2
    limit.release()
    limit.release()
    assert limit._inflight == 0
    assert _acquired_within(limit, 1.0)


def test_a_429_halves_the_limit_once_per_burst() -> None:
    limit = AdaptiveLimit(8)
    for _ in range(3):
        limit.acquire()                         # three requests in flight at once
    limit.throttle(None)
    assert (limit.limit, limit.cuts, limit.throttled) == (4.0, 1, 1)
    limit.throttle(None)                        # same thread, but sent before the cut:
    assert (limit.limit, limit.cuts, limit.throttled) == (4.0, 1, 2)
    limit.acquire()                             # sent after the cut: says something new
    limit.throttle(None)
    assert (limit.limit, limit.cuts) == (2.0, 2)
    for _ in range(4):
        limit.release()
    for _ in range(5):
        limit.acquire()
        limit.release()
        limit.throttle(None)
    assert limit.limit == 1.0                   # never below one


def test_other_threads_429s_from_before_the_cut_do_not_cut_again() -> None:
    limit = AdaptiveLimit(8)
    workers = [threading.Thread(target=limit.acquire) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    limit.acquire()
    limit.throttle(None)
    assert limit.limit == 4.0
    results = []
    t = threading.Thread(target=lambda: (limit.throttle(None), results.append(limit.limit)))
    t.start()
    t.join()
    assert results == [2.0]                     # a thread that never acquired is "after the cut"


def test_retry_after_pauses_every_later_request() -> None:
    limit = AdaptiveLimit(4)
    limit.acquire()
    limit.throttle(0.3)
    limit.release()
    started = time.monotonic()
    limit.acquire()
    assert time.monotonic() - started >= 0.25
    limit.release()
    limit.throttle(0.0)                         # zero or absent: no pause
    started = time.monotonic()
    limit.acquire()
    assert time.monotonic() - started < 0.1


def test_success_grows_the_limit_back_slowly_and_more_slowly_after_each_cut() -> None:
    limit = AdaptiveLimit(8)
    limit.success()
    assert limit.limit == 8.0                   # never above the maximum
    limit.acquire()
    limit.throttle(None)                        # 4.0, one cut: patience 2
    limit.success()
    assert limit.limit == pytest.approx(4 + 1 / (4 * 2))
    limit.acquire()
    limit.throttle(None)                        # ~2.06, two cuts: patience 4
    before = limit.limit
    limit.success()
    assert limit.limit == pytest.approx(before + 1 / (before * 4))
    many = AdaptiveLimit(2)
    for _ in range(10):
        many.acquire()
        many.throttle(None)
        many.release()
    assert many.cuts == 10
    many.success()                              # patience stops at 2**6
    assert many.limit == pytest.approx(1 + 1 / 64)


def test_growth_stops_exactly_at_the_maximum() -> None:
    limit = AdaptiveLimit(2)
    limit.acquire()
    limit.throttle(None)
    for _ in range(200):
        limit.success()
    assert limit.limit == 2.0


def test_success_wakes_a_waiter_when_the_limit_grows() -> None:
    limit = AdaptiveLimit(2)
    limit.acquire()
    limit.throttle(None)                        # limit 1, one in flight
    assert not _acquired_within(limit, 0.05)
    for _ in range(8):                          # grows past 2 without any release
        limit.success()
    time.sleep(0.1)
    assert limit._inflight == 2


def acquired_within(limit: AdaptiveLimit, deadline: float, seconds: float = 2.0) -> list[bool]:
    """acquire() on another thread, so a wait that never ends fails the test."""
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(limit.acquire(deadline)), daemon=True)
    t.start()
    t.join(seconds)
    assert got, f"acquire() still waiting after {seconds} s"
    return got


def test_waiting_for_a_slot_gives_up_at_the_deadline_holding_none() -> None:
    limit = AdaptiveLimit(1)
    assert limit.acquire()
    started = time.monotonic()
    assert acquired_within(limit, time.monotonic() + 0.05) == [False]
    assert 0.04 < time.monotonic() - started < 0.5
    limit.release()  # the first slot; had the refused call taken one, this would not free it all
    assert acquired_within(limit, time.monotonic() + 0.05) == [True]


def test_a_pause_past_the_deadline_is_refused_one_ending_at_it_is_waited(fake_clock: FakeClock) -> None:
    limit = AdaptiveLimit(4)
    assert limit.acquire()
    limit.throttle(2.0)                          # resume at 1002
    limit.release()
    assert limit.acquire(1001.0) is False and fake_clock.sleeps == []
    assert limit.acquire(1002.0) is True and fake_clock.sleeps == [2.0]


def test_a_retry_after_is_capped_at_an_hour(fake_clock: FakeClock) -> None:
    limit = AdaptiveLimit(4)
    assert limit.acquire()
    limit.throttle(5000.0)
    limit.release()
    assert limit.acquire() is True and fake_clock.sleeps == [3600.0]
