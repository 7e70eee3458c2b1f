"""§7 with Redis: heartbeat counters counted in each process within a local share, sent in batches.

Against the real Redis on this machine (database 15, keys of their own per test), with an
injected clock: the promise is that a limit of N never refuses before N were let through and
lets through at most N plus each process's share, every hit reaches Redis, and far below the
limits heartbeats share one round trip per flush interval.
"""
from __future__ import annotations

import random
import uuid as uuid_lib

import pytest
import redis
from limits import parse
from limits.storage import storage_from_string

from redis_counters import (
    FLUSH_INTERVAL_SECONDS,
    SWEEP_INTERVAL_SECONDS,
    RedisCounters,
    local_share,
)
from tests.faults import ChaosProxy

REDIS_URL = "redis://127.0.0.1:6379/15"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def counter_key():
    """A fresh counter name, and a way to read its count in Redis."""
    name = f"test-{uuid_lib.uuid4()}"
    yield name
    for key in redis.Redis.from_url(REDIS_URL).scan_iter(f"*{name}*"):
        redis.Redis.from_url(REDIS_URL).delete(key)


def processes(count: int, clock: FakeClock, url: str = REDIS_URL) -> list[RedisCounters]:
    return [RedisCounters(storage_from_string(url), clock) for _ in range(count)]


def redis_count(counters: RedisCounters, limit, name: str) -> int:
    return int(counters.storage.get_connection().get(counters.key(limit, "t", name)) or 0)


def hit(counters: RedisCounters, limit, name: str) -> bool:
    return counters.hit([(limit, counters.key(limit, "t", name))]) is None


def test_the_local_share_is_one_percent_and_at_least_one():
    assert [local_share(parse(f"{n}/minute")) for n in (1, 60, 100, 6000)] == [1, 1, 1, 60]


def test_one_process_lets_exactly_the_amount_through_and_redis_counts_every_hit(counter_key):
    clock = FakeClock()
    [counters] = processes(1, clock)
    limit = parse("300/minute")
    answers = []
    for n in range(400):
        answers.append(hit(counters, limit, counter_key))
        if n % 7 == 0:
            clock.advance(FLUSH_INTERVAL_SECONDS)  # flushes now and then, between hits
    counters.flush()
    assert answers == [True] * 300 + [False] * 100
    assert redis_count(counters, limit, counter_key) == 400  # limits counts refused hits too


@pytest.mark.parametrize("seed", range(6))
def test_several_processes_never_refuse_before_the_amount_nor_overshoot_their_shares(
        counter_key, seed):
    clock = FakeClock()
    workers = processes(4, clock)
    limit = parse("500/minute")  # a share of 5 each
    chance = random.Random(seed)
    admitted_before_first_refusal, admitted, refused = None, 0, 0
    for _ in range(700):
        if chance.random() < 0.05:
            clock.advance(FLUSH_INTERVAL_SECONDS * chance.random() * 2)
        if hit(chance.choice(workers), limit, counter_key):
            admitted += 1
        else:
            refused += 1
            if admitted_before_first_refusal is None:
                admitted_before_first_refusal = admitted
    for worker in workers:
        worker.flush()
    assert admitted_before_first_refusal >= 500
    assert 500 <= admitted <= 500 + 4 * local_share(limit)
    assert redis_count(workers[0], limit, counter_key) == admitted + refused


def test_far_below_the_limits_heartbeats_share_one_round_trip_per_interval(counter_key):
    clock = FakeClock()
    [counters] = processes(1, clock)
    per_client, per_uuid = parse("6000/minute"), parse("60/minute")
    sent = []
    connection = counters.storage.get_connection()
    execute_command = connection.execute_command
    connection.execute_command = lambda *args, **options: sent.append(args[0]) or \
        execute_command(*args, **options)
    hit(counters, per_client, "warm-up")
    counters.flush()  # loads the script
    sent.clear()

    def heartbeat(uuid: int) -> bool:
        return counters.hit([(per_client, counters.key(per_client, "t", counter_key)),
                             (per_uuid, counters.key(per_uuid, "t", f"{counter_key}-{uuid}"))]) \
            is None

    assert all(heartbeat(uuid) for uuid in range(50))  # 50 applications, one ping each
    assert sent == []
    clock.advance(FLUSH_INTERVAL_SECONDS)
    assert all(heartbeat(uuid) for uuid in range(50, 60))
    assert sent == ["EVALSHA"]  # the first of these sent the 50 before
    counters.flush()
    assert redis_count(counters, per_client, counter_key) == 60
    assert [redis_count(counters, per_uuid, f"{counter_key}-{uuid}") for uuid in range(60)] == \
        [1] * 60


def test_near_a_limit_each_heartbeat_is_counted_in_redis_at_once(counter_key):
    clock = FakeClock()
    first, second = processes(2, clock)
    limit = parse("3/minute")
    assert hit(first, limit, counter_key)  # this process's share of one
    assert hit(second, limit, counter_key)  # and the other's
    assert hit(first, limit, counter_key)  # its share is used: checked in Redis, 2 so far
    assert redis_count(first, limit, counter_key) == 2  # the second's hit is not sent yet
    assert not hit(second, limit, counter_key)  # sent with it: 4, over
    # The first last heard 2: one more on its share (4 let through, within 3 + 2 x 1), then
    # Redis refuses it too.
    assert hit(first, limit, counter_key)
    assert not hit(first, limit, counter_key)
    assert redis_count(first, limit, counter_key) == 6


def test_hits_of_an_ended_window_are_not_sent_into_the_next(counter_key):
    clock = FakeClock()
    [counters] = processes(1, clock)
    limit = parse("100/minute")
    assert hit(counters, limit, counter_key)
    counters.flush()  # Redis says when the window ends
    assert hit(counters, limit, counter_key)  # counted here, unsent
    clock.advance(61)
    assert hit(counters, limit, counter_key)  # a new window here: the one before is dropped
    counters.flush()
    assert redis_count(counters, limit, counter_key) == 2  # not 3: the ended window's hit


def test_hits_not_sent_while_redis_is_unreachable_are_sent_when_it_answers(counter_key):
    clock = FakeClock()
    proxy = ChaosProxy("127.0.0.1", 6379)
    try:
        [counters] = processes(1, clock, f"redis://127.0.0.1:{proxy.port}/15")
        limit = parse("100/minute")
        for _ in range(3):
            assert hit(counters, limit, counter_key)
        proxy.cut()
        with pytest.raises(redis.RedisError):
            counters.flush()
        proxy.restore()
        counters.flush()
        assert redis_count(counters, limit, counter_key) == 3
    finally:
        proxy.close()


def test_while_redis_cannot_be_asked_a_process_counts_on_from_what_it_last_heard(counter_key):
    clock = FakeClock()
    [counters] = processes(1, clock)
    limit = parse("10/minute")
    for _ in range(8):
        assert hit(counters, limit, counter_key)
    counters.flush()  # Redis has said 8
    offline = [counters.hit_offline([(limit, counters.key(limit, "t", counter_key))])
               for _ in range(4)]
    assert [refusal is None for refusal in offline] == [True, True, False, False]
    assert 1 <= offline[2][1] <= 61  # Retry-After: the window Redis said it has left
    counters.flush()  # Redis answers again: every hit is sent, refused ones too
    assert redis_count(counters, limit, counter_key) == 12


def test_counters_of_ended_windows_are_forgotten_even_while_redis_cannot_be_asked(counter_key):
    clock = FakeClock()
    [counters] = processes(1, clock)
    limit = parse("100/minute")
    for n in range(50):  # a client spraying UUIDs while Redis is away
        counters.hit_offline([(limit, counters.key(limit, "t", f"{counter_key}-{n}"))])
    assert len(counters._counters) == 50
    clock.advance(SWEEP_INTERVAL_SECONDS + 61)
    counters.flush()  # Redis is back: the sweep first, then nothing of ended windows to send
    assert counters._counters == {}
    assert redis_count(counters, limit, f"{counter_key}-0") == 0


def test_an_older_answer_arriving_late_does_not_lower_the_count_heard(counter_key):
    clock = FakeClock()
    [counters] = processes(1, clock)
    limit = parse("100/minute")
    counter_redis_key = counters.key(limit, "t", counter_key)
    for _ in range(3):
        assert counters.hit_exact([(limit, counter_redis_key)]) is None
    counter = counters._counters[counter_redis_key]
    assert counter.counted == 3
    counter.learn(2, 59_000, clock())  # an answer sent before the last one, handled after it
    assert counter.counted == 3
