"""A driver's stream of a turn, followed across lost workers.

With ``ASH_TURN_RECOVERY=continue`` a turn whose worker is lost (its process or its node)
continues on a new worker, in the same numbering. A driver streaming it
(:meth:`~ash_ray.handles.SessionClient.ask_events`) follows it there as the HTTP ingress
does (:func:`ash_ray.api.sse.pump`): it tells the registry what it saw
(``worker_failed``), which answers with the events that end the turn when it does not
continue; else it re-attaches and reads on from the last event it saw: from the store
what the new worker no longer holds, then the new worker's stream until ``done``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ash_ray.actor_api import Event
from ash_ray.calls import STALE

if TYPE_CHECKING:
    from ash_ray.handles import SessionClient

# Workers a stream follows its turn across before it gives up (each one lost mid-turn).
MAX_RECOVERIES = 3
# A driver's follow-up stream sends a heartbeat (an empty batch, skipped) this often.
HEARTBEAT_S = 30.0


def event(raw: Any) -> Event:
    seq, type_, data = raw
    return int(seq), str(type_), dict(data)


def follow(client: SessionClient, seen: int, timeout_s: float | None) -> Iterator[Event]:
    """The rest of a turn whose worker was lost after the event ``seen``, up to ``done``."""
    for _attempt in range(MAX_RECOVERIES):
        ending = client.registry.worker_failed(client.id, seen).get(timeout_s)
        if ending:
            yield from (event(e) for e in ending)
            return
        client.again_sync()  # the worker the turn continues on
        try:
            for ev in _rest(client, seen, timeout_s):
                yield ev
                seen = ev[0]
                if ev[1] == "done":
                    return
            return
        except STALE:
            continue  # that worker was lost too
    yield from (event(e) for e in client.registry.worker_failed(client.id, seen).get(timeout_s))


def _rest(client: SessionClient, after: int, timeout_s: float | None) -> Iterator[Event]:
    oldest = client.oldest_seq().get(timeout_s)
    if oldest > after + 1:  # what the new worker does not hold: from the store
        for rec in client.registry.list_events(client.id, after, oldest - after - 1).get(
            timeout_s
        ):
            yield rec.seq, rec.type, rec.data
            after = rec.seq
    heartbeat_s = HEARTBEAT_S if timeout_s is None else min(HEARTBEAT_S, timeout_s / 2)
    for batch in client.event_batches(after, heartbeat_s, timeout_s):
        yield from (event(e) for e in batch)
