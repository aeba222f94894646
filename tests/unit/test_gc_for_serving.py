"""A ready service's collector: start-up objects left out of its passes, young passes rarer."""

from __future__ import annotations

import gc

from albatross.lifecycle import YOUNG_GC_THRESHOLD, tune_gc_for_serving


def test_objects_alive_at_the_freeze_are_left_out_of_collections_and_later_ones_are_not() -> None:
    startup = [[n] for n in range(20_000)]  # tracked containers, as a service's start-up makes
    thresholds = gc.get_threshold()
    try:
        assert tune_gc_for_serving() >= len(startup)
        later = [[n] for n in range(10)]
        gc.collect()
        watched = {id(o) for o in gc.get_objects(generation=2)}
        assert not any(id(o) in watched for o in startup)
        assert all(id(o) in watched for o in later)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_young_collections_wait_for_more_new_objects_and_the_older_thresholds_stay() -> None:
    thresholds = gc.get_threshold()
    try:
        tune_gc_for_serving()
        assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, *thresholds[1:])
        assert thresholds[0] < YOUNG_GC_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
