"""The ledger of one pipeline: it opens the pipeline's sessions and ends them all at the end.

Sessions are created *by the ledger* (a small actor), not by the map workers, so that no
session escapes: Ray Data kills its map workers when a pipeline finishes or fails,
possibly while one waits for a create, and the registry finishes a create whose caller
died. Here the create is the ledger's own call, its id is written down when it returns,
and :meth:`SessionLedger.close` waits for creates in flight before ending everything.

Map workers have no finaliser on purpose. Ray Data drops them when the pipeline ends;
with Ray 2.60, calls that two dying workers made from ``__del__`` reached this actor as
tasks with clashing ids and crashed it ("Check failed" in the core worker), one run in
three here. The ledger needs nothing from them at the end.
"""

from __future__ import annotations

import threading
from typing import Any

import ray
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from ash_ray.errors import Conflict, NotFound, SessionEnded, Unavailable
from ash_ray.handles import RegistryClient
from ash_ray.pipeline.client import REGISTRY_TIMEOUT_S, capacity_retry

CONFLICT_RETRY_S = 10.0
CONFLICT_POLL_S = 0.1


class SessionLedger:
    """Opens, tracks and finally ends one pipeline's sessions (a Ray actor, no CPU)."""

    def __init__(self, namespace: str, pipeline_id: str) -> None:
        self.registry = RegistryClient(namespace)
        _ = self.registry.handle  # Unavailable now when ash-ray is not running
        self.pipeline_id = pipeline_id
        self.open: set[str] = set()
        self.created = 0
        self.closed = False
        self.in_flight = 0
        self.changed = threading.Condition()

    def create(self, body: dict[str, Any], wait_s: float) -> str:
        """Create a session (retrying ``AtCapacity`` for up to ``wait_s``); its id."""
        with self.changed:
            if self.closed:
                raise Unavailable(
                    f"pipeline {self.pipeline_id} has finished; it opens no more sessions"
                )
            self.in_flight += 1
        try:
            sid = self._create(body, wait_s)
            with self.changed:
                self.open.add(sid)
                self.created += 1
            return sid
        finally:
            with self.changed:
                self.in_flight -= 1
                self.changed.notify_all()

    def _create(self, body: dict[str, Any], wait_s: float) -> str:
        def create() -> str:
            if self.closed:
                raise Unavailable(
                    f"pipeline {self.pipeline_id} has finished; it opens no more sessions"
                )
            return self.registry.create_session(body).get(REGISTRY_TIMEOUT_S).id

        return capacity_retry(wait_s, poll_s=0.5)(create)

    def end(self, session_id: str) -> None:
        """End one session now (a worker is done with it); unknown or ended ids are fine."""
        retry = Retrying(  # Conflict: another call is changing its state right now
            stop=stop_after_delay(CONFLICT_RETRY_S),
            wait=wait_fixed(CONFLICT_POLL_S),
            retry=retry_if_exception_type(Conflict),
            reraise=True,
        )
        try:
            retry(lambda: self.registry.end(session_id).get(REGISTRY_TIMEOUT_S))
        except (NotFound, SessionEnded):
            pass
        with self.changed:
            self.open.discard(session_id)

    def opened(self) -> list[str]:
        """Ids of the sessions open right now."""
        with self.changed:
            return sorted(self.open)

    def close(self, timeout_s: float = 600.0) -> dict[str, Any]:
        """Refuse new sessions, let creates in flight land, end every open session."""
        with self.changed:
            self.closed = True
            self.changed.wait_for(lambda: self.in_flight == 0, timeout=timeout_s)
            ids = sorted(self.open)
        failed = []
        for sid in ids:  # ends are quick; one at a time keeps the registry's load flat
            try:
                self.end(sid)
            except Exception as exc:
                failed.append(f"{sid}: {type(exc).__name__}: {exc}")
        return {"created": self.created, "ended": len(ids) - len(failed), "failed": failed}


def start_ledger(namespace: str, pipeline_id: str, concurrency: int) -> Any:
    """The ledger actor of one pipeline (owned by the caller: it dies with the driver)."""
    return (
        ray.remote(SessionLedger)
        .options(
            name=f"ash-pipeline-{pipeline_id}",
            namespace=namespace,
            num_cpus=0,
            max_concurrency=concurrency + 4,
        )
        .remote(namespace, pipeline_id)
    )
