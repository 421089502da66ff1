"""The pool's SDK warm-up streams a whole canned answer (text and a tool call)."""

from __future__ import annotations

import asyncio

from ash_ray.agent.warmup import warm_sdk


def test_warm_up_streams_a_complete_message_through_the_sdk() -> None:
    assert asyncio.run(warm_sdk()) is True


def test_warm_up_can_run_again_in_the_same_process() -> None:
    # Pool workers call it once, but a second run must not trip on the first one's server.
    assert asyncio.run(warm_sdk()) is True
    assert asyncio.run(warm_sdk()) is True
