"""Which failed batches the projector takes apart event by event (runner.refused_as_data)."""

from __future__ import annotations

import asyncpg
import pytest

from albatross.adapters.postgres.applier import CheckpointMoved
from albatross.services.projector.runner import refused_as_data


@pytest.mark.parametrize("exc", [
    asyncpg.exceptions.DataError("data exception"),
    asyncpg.exceptions.DatetimeFieldOverflowError("date/time field value out of range"),
    asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence"),
    # The driver's own, raised before sending (its class is not public).
    asyncpg.exceptions._base.DataError("invalid input for query argument $32"),
])
def test_what_the_data_causes_is_refused_as_data(exc: BaseException) -> None:
    assert refused_as_data(exc)


@pytest.mark.parametrize("exc", [
    asyncpg.exceptions.ConnectionDoesNotExistError("connection closed"),
    asyncpg.exceptions.SerializationError("could not serialize"),
    asyncpg.exceptions.QueryCanceledError("statement timeout"),
    TimeoutError(),
    OSError("connection reset"),
    CheckpointMoved("the checkpoint is no longer 7"),
    ValueError("a bug of ours"),  # would poison every event instead of stopping
])
def test_what_the_moment_causes_is_retried(exc: BaseException) -> None:
    assert not refused_as_data(exc)
