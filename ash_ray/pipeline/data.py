"""Ray Data: run a column of prompts through an agent with bounded concurrency.

``concurrency`` map workers (a fixed actor pool) each run one turn at a time, so at most
``concurrency`` sessions are busy whatever the size of the dataset, and the registry's
capacity applies as it does over HTTP. Every session the pipeline opens is written to a
small ledger actor (:mod:`ash_ray.pipeline.ledger`) that creates them; when the pipeline
closes (finished, failed or interrupted) the ledger ends whatever is still open, because
Ray Data does not promise to run a map worker's finaliser. Consumed lazily, the map runs
at most ``max_rows_ahead`` rows ahead of its consumer (:mod:`ash_ray.pipeline.run_ahead`).
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Literal

import numpy as np
import ray
import ray.data
from ray.data.dataset import MaterializedDataset

from ash_ray.calls import STALE
from ash_ray.errors import InvalidInput, TurnFailed, WorkerLost
from ash_ray.handles import RegistryClient, TurnOutcome
from ash_ray.models import new_id
from ash_ray.pipeline.client import (
    DEFAULT_NAMESPACE,
    AgentSession,
    AshRay,
    capacity_retry,
    get,
    session_body,
    turn_options,
)
from ash_ray.pipeline.ledger import start_ledger
from ash_ray.pipeline.run_ahead import RUN_AHEAD_KWARG, RunAhead, default_max_rows_ahead, install
from ash_ray.registry.recovery import WORKER_LOST

logger = logging.getLogger(__name__)

SessionPer = Literal["worker", "row"]
OnError = Literal["record", "raise"]


class PromptRunner:
    """The map worker: one session for its lifetime (``worker``) or one per row (``row``)."""

    def __init__(
        self,
        ledger: Any,
        namespace: str,
        session_per: SessionPer,
        prompt_column: str,
        output_column: str,
        body: dict[str, Any],
        options: dict[str, Any],
        on_error: OnError,
        capacity_wait_s: float,
        run_ahead: RunAhead | None = None,
    ) -> None:
        # ``run_ahead`` is read from the plan by the backpressure policy, not used here.
        self.ash = AshRay(RegistryClient(namespace))
        self.ledger = ledger
        self.session_per = session_per
        self.prompt_column = prompt_column
        self.output_column = output_column
        self.body = body
        self.options = options
        self.on_error = on_error
        self.capacity_wait_s = capacity_wait_s
        self.session: AgentSession | None = None
        if session_per == "worker":
            self.session = self._open()

    def _open(self) -> AgentSession:
        sid = get(self.ledger.create.remote(self.body, self.capacity_wait_s))
        # Evicted before its first message (its grace over, others waiting for a slot), the
        # session resumes on attach, which waits for a slot as the create did.
        return capacity_retry(self.capacity_wait_s)(lambda: self.ash.attach(sid))

    def _close(self, session: AgentSession) -> None:
        get(self.ledger.end.remote(session.id))

    def _ask(self, prompt: str) -> TurnOutcome:
        """One row's turn; a turn lost with its worker is asked once more, on a fresh
        session (the first attempt produced no answer, so the row is answered once)."""
        try:
            outcome = self._ask_once(prompt)
            if outcome.get("error") != WORKER_LOST:
                return outcome
        except (WorkerLost, *STALE) as exc:
            logger.warning("a row's worker was lost (%s); retrying on a fresh session", exc)
        if self.session is not None:
            self._close(self.session)
            self.session = self._open()
        return self._ask_once(prompt)

    def _ask_once(self, prompt: str) -> TurnOutcome:
        if self.session is not None:
            return self.session.run(prompt, **self.options)
        session = self._open()
        try:
            return session.run(prompt, **self.options)
        finally:
            self._close(session)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.prompt_column not in batch:
            raise InvalidInput(
                f"the dataset has no column {self.prompt_column!r} "
                f"(columns: {', '.join(batch)}); pass prompt_column="
            )
        rows = []
        for prompt in batch[self.prompt_column]:
            if not isinstance(prompt, str):
                raise InvalidInput(
                    f"every prompt must be a string; got {prompt!r} in {self.prompt_column!r}"
                )
            outcome = self._ask(str(prompt))
            error = outcome.get("error") or (
                str(outcome.get("result") or outcome.get("subtype"))
                if outcome.get("isError")
                else None
            )
            if error and self.on_error == "raise":
                raise TurnFailed(
                    f"a turn of session {outcome.get('sessionId')} failed: {error}",
                    session_id=outcome.get("sessionId"),
                )
            rows.append((outcome, error))
        return self._columns(batch, rows)

    def _columns(
        self, batch: dict[str, np.ndarray], rows: list[tuple[TurnOutcome, str | None]]
    ) -> dict[str, np.ndarray]:
        def col(values: list[Any], dtype: Any = object) -> np.ndarray:
            return np.array(values, dtype=dtype)

        usages = [o.get("usage") or {} for o, _ in rows]
        out = dict(batch)
        out[self.output_column] = col([None if e else o.get("result") for o, e in rows])
        out["session_id"] = col([o.get("sessionId") for o, _ in rows])
        out["error"] = col([e for _, e in rows])
        out["num_turns"] = col([int(o.get("numTurns") or 0) for o, _ in rows], np.int64)
        out["input_tokens"] = col([int(u.get("input_tokens", 0)) for u in usages], np.int64)
        out["output_tokens"] = col([int(u.get("output_tokens", 0)) for u in usages], np.int64)
        if self.options.get("output_format"):
            out["structured_output"] = col([o.get("structuredOutput") for o, _ in rows])
        return out


def run_ahead_bound(concurrency: int, batch_size: int, max_rows_ahead: int | None) -> RunAhead:
    """The map's run-ahead bound, or InvalidInput naming the setting to fix."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if max_rows_ahead is None:
        return RunAhead(default_max_rows_ahead(concurrency, batch_size), batch_size)
    if isinstance(max_rows_ahead, bool) or not isinstance(max_rows_ahead, int):
        raise InvalidInput(f"max_rows_ahead must be an integer, got {max_rows_ahead!r}")
    if max_rows_ahead < batch_size:
        raise InvalidInput(
            f"max_rows_ahead must be at least batch_size ({batch_size}) for a batch to "
            f"start, got {max_rows_ahead}; leave it out for {concurrency} workers x 2 batches"
        )
    return RunAhead(max_rows_ahead, batch_size)


class PipelineSessions:
    """A context manager for lazy pipelines; every session it opened is ended on exit.

    ::

        with PipelineSessions("summariser", concurrency=4) as stage:
            stage.map(ds, prompt_column="text").write_parquet("/data/out")

    Consume the dataset *inside* the block: sessions are ended when it exits.
    """

    def __init__(
        self,
        agent: str,
        *,
        concurrency: int = 4,
        session_per: SessionPer = "worker",
        namespace: str = DEFAULT_NAMESPACE,
        session_config: dict[str, Any] | None = None,
        capacity_wait_s: float = 60.0,
    ) -> None:
        if concurrency < 1:
            raise InvalidInput(f"concurrency must be >= 1, got {concurrency}")
        if session_per not in ("worker", "row"):
            raise InvalidInput(f"session_per must be 'worker' or 'row', got {session_per!r}")
        self.agent = agent
        self.concurrency = concurrency
        self.session_per = session_per
        self.namespace = namespace
        # Bad settings fail here, not in a map worker.
        self.body = session_body(agent, dict(session_config or {}))
        self.capacity_wait_s = capacity_wait_s
        self.pipeline_id = new_id()
        self.ledger: Any = None
        self.summary: dict[str, Any] | None = None

    def __enter__(self) -> PipelineSessions:
        _ = RegistryClient(self.namespace).handle  # fail early and clearly: is ash-ray running?
        self.ledger = start_ledger(self.namespace, self.pipeline_id, self.concurrency)
        return self

    def map(
        self,
        ds: ray.data.Dataset,
        *,
        prompt_column: str = "prompt",
        output_column: str = "answer",
        batch_size: int = 8,
        max_rows_ahead: int | None = None,
        num_cpus: float = 0.05,
        on_error: OnError = "record",
        **options: Any,
    ) -> ray.data.Dataset:
        """``ds`` with the answers added (lazy); ``options`` are turn options (``model``,
        ``max_turns``, ``output_format``, ...).

        Consumed lazily, the map starts no batch that would put more than
        ``max_rows_ahead`` rows (default ``2 * concurrency * batch_size``) between its
        consumer and the rows it has started: a slow consumer holds the turns back."""
        if self.ledger is None:
            raise InvalidInput("use PipelineSessions as a context manager: `with ... as stage`")
        checked = turn_options("-", options)  # bad options fail here, not in a worker
        run_ahead = run_ahead_bound(self.concurrency, batch_size, max_rows_ahead)
        out = ds.map_batches(
            PromptRunner,
            fn_constructor_kwargs={
                "ledger": self.ledger,
                "namespace": self.namespace,
                "session_per": self.session_per,
                "prompt_column": prompt_column,
                "output_column": output_column,
                "body": self.body,
                "options": checked,
                "on_error": on_error,
                "capacity_wait_s": self.capacity_wait_s,
                RUN_AHEAD_KWARG: run_ahead,
            },
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(
                size=self.concurrency, max_tasks_in_flight_per_actor=1
            ),
            num_cpus=num_cpus,
        )
        install(out.context)
        return out

    def close(self) -> dict[str, Any]:
        """End every session the pipeline still holds; idempotent."""
        if self.ledger is None:
            return self.summary or {"created": 0, "ended": 0, "failed": []}
        try:
            self.summary = dict(get(self.ledger.close.remote()))
        finally:
            ray.kill(self.ledger)
            self.ledger = None
        if self.summary["failed"]:
            logger.warning(
                "pipeline %s could not end sessions: %s", self.pipeline_id, self.summary["failed"]
            )
        return self.summary

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def run_prompts(
    ds: ray.data.Dataset,
    agent: str,
    *,
    prompt_column: str = "prompt",
    output_column: str = "answer",
    concurrency: int = 4,
    session_per: SessionPer = "worker",
    namespace: str = DEFAULT_NAMESPACE,
    session_config: dict[str, Any] | None = None,
    batch_size: int = 8,
    on_error: OnError = "record",
    capacity_wait_s: float = 60.0,
    **options: Any,
) -> MaterializedDataset:
    """Run ``ds[prompt_column]`` through ``agent``; returns the dataset, *materialised*.

    Adds ``output_column`` (the final text) and ``session_id``, ``error``, ``num_turns``,
    ``input_tokens``, ``output_tokens`` (and ``structured_output`` when ``output_format`` is
    given). At most ``concurrency`` sessions run at once. The sessions are ended before
    this returns or raises. For a lazy or streamed pipeline use :class:`PipelineSessions`.
    """
    with PipelineSessions(
        agent,
        concurrency=concurrency,
        session_per=session_per,
        namespace=namespace,
        session_config=session_config,
        capacity_wait_s=capacity_wait_s,
    ) as stage:
        out = stage.map(
            ds,
            prompt_column=prompt_column,
            output_column=output_column,
            batch_size=batch_size,
            on_error=on_error,
            **options,
        )
        return out.materialize()
