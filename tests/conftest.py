from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

import octopus

settings.register_profile(
    "octopus", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100)
settings.load_profile("octopus")


@pytest.fixture
def engine() -> Iterator[octopus.Engine]:
    with octopus.Engine() as e:
        yield e
