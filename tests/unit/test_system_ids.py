"""UuidV7Ids: RFC 9562 version 7 ids, formatted by hand (so checked against uuid here)."""

from __future__ import annotations

import time
import uuid

from albatross.adapters.system import UuidV7Ids


def test_ids_are_rfc_9562_version_7_in_canonical_form() -> None:
    ids = UuidV7Ids()
    for _ in range(2000):
        text = ids.new_id()
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # lower-case hex, 8-4-4-4-12


def test_ids_carry_the_creation_millisecond_and_sort_by_it() -> None:
    ids = UuidV7Ids()
    before = time.time_ns() // 1_000_000
    first = ids.new_id()
    time.sleep(0.003)
    second = ids.new_id()
    after = time.time_ns() // 1_000_000
    millis = [uuid.UUID(i).int >> 80 for i in (first, second)]
    assert before <= millis[0] < millis[1] <= after
    assert first < second


def test_ids_do_not_repeat_and_their_random_bits_vary() -> None:
    ids = [uuid.UUID(UuidV7Ids().new_id()).int for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    random_bits = (1 << 62) - 1  # rand_b: below the variant
    assert len({i & random_bits for i in ids}) == len(ids)
    rand_a = {(i >> 64) & 0xFFF for i in ids}
    assert len(rand_a) > 1000  # 12 random bits over 5,000 ids: nearly all 4,096 values
