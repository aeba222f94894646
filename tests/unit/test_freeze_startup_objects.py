"""What start-up built is left out of the cyclic collector's passes; what comes later is not."""

from __future__ import annotations

import gc

from albatross.lifecycle import freeze_startup_objects


def test_objects_alive_at_the_freeze_are_left_out_of_collections_and_later_ones_are_not() -> None:
    startup = [[n] for n in range(20_000)]  # tracked containers, as a service's start-up makes
    try:
        assert freeze_startup_objects() >= len(startup)
        later = [[n] for n in range(10)]
        gc.collect()
        watched = {id(o) for o in gc.get_objects(generation=2)}
        assert not any(id(o) in watched for o in startup)
        assert all(id(o) in watched for o in later)
    finally:
        gc.unfreeze()
