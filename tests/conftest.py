from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

import octopus

settings.register_profile(
    "octopus", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100)
settings.load_profile("octopus")

# Started in the background (`nohup make test &`), pytest inherits SIGINT ignored, and
# so would every command the tests start and interrupt with Ctrl-C (an ignored signal
# stays ignored across exec). A handler here makes the children start with the default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def engine() -> Iterator[octopus.Engine]:
    with octopus.Engine() as e:
        yield e
