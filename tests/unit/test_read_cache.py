"""ReadCache: answers kept only within one generation of the read models, and not too long."""

from __future__ import annotations

from albatross.adapters.postgres.read_cache import ReadCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_served_within_its_generation_and_age() -> None:
    clock = Clock()
    cache: ReadCache[str] = ReadCache(max_age=1.0, clock=clock)
    assert cache.get(7, "k") == (False, None)
    cache.put(7, "k", "answer")
    clock.now += 0.9
    assert cache.get(7, "k") == (True, "answer")
    clock.now += 0.2
    assert cache.get(7, "k") == (False, None)


def test_a_new_generation_empties_the_cache() -> None:
    cache: ReadCache[str] = ReadCache(max_age=10.0, clock=Clock())
    cache.get(1, "k")
    cache.put(1, "k", "old")
    cache.put(1, "other", "old too")
    assert cache.get(2, "k") == (False, None)
    assert len(cache) == 0
    assert cache.get(2, "other") == (False, None)


def test_an_answer_whose_query_overlapped_a_change_is_not_kept() -> None:
    cache: ReadCache[str] = ReadCache(max_age=10.0, clock=Clock())
    cache.get(1, "k")              # the query starts in generation 1
    cache.get(2, "elsewhere")      # a notification arrives meanwhile: generation 2
    cache.put(1, "k", "maybe stale")
    assert cache.get(2, "k") == (False, None)
    assert len(cache) == 0


def test_none_is_an_answer_too() -> None:
    cache: ReadCache[str | None] = ReadCache(max_age=10.0, clock=Clock())
    cache.get(1, "missing")
    cache.put(1, "missing", None)
    assert cache.get(1, "missing") == (True, None)


def test_the_oldest_answer_makes_room_when_full() -> None:
    cache: ReadCache[int] = ReadCache(max_age=10.0, max_entries=2, clock=Clock())
    cache.get(1, "a")
    cache.put(1, "a", 1)
    cache.put(1, "b", 2)
    cache.put(1, "a", 10)          # a refresh takes no extra room
    cache.put(1, "c", 3)
    assert len(cache) == 2
    assert cache.get(1, "a") == (False, None)
    assert cache.get(1, "b") == (True, 2)
    assert cache.get(1, "c") == (True, 3)


def test_max_age_zero_keeps_nothing() -> None:
    cache: ReadCache[str] = ReadCache(max_age=0.0, clock=Clock())
    assert not cache.enabled
    cache.get(1, "k")
    cache.put(1, "k", "answer")
    assert cache.get(1, "k") == (False, None)
