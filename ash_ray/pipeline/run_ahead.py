"""Backpressure in rows: how far a pipeline's turns may run ahead of its consumer.

Ray Data 2.60 backpressures its streaming executor on object-store *bytes* (the
``ResourceBudget`` and ``DownstreamCapacity`` policies; ``ConcurrencyCap`` only caps task
pools). A column of prompts and answers is a few kilobytes, far below any byte budget, so
a lazily consumed ``PipelineSessions.map`` would run every row's turn ahead of a slow
consumer, each one costing tokens and holding a session. Ray Data lets a dataset's
context list its backpressure policies (``backpressure_policies.enabled``); this module
adds one that counts rows instead of bytes, for the agent map operators only:

    rows ahead = rows in the operator's running batches
               + rows it has answered that the next operator (or the consumer) has not
                 taken yet

and the operator starts no new batch while ``rows ahead + batch_size > max_rows_ahead``.
When the consumer reads on, the rows it takes leave the count and the next batch starts.
A fast consumer keeps the count at the batches in flight, so it is never held back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray.data._internal.execution import backpressure_policy as ray_policies
from ray.data._internal.execution.backpressure_policy import BackpressurePolicy
from ray.data.context import DataContext

RUN_AHEAD_KWARG = "run_ahead"  # the map worker's constructor argument the policy reads


@dataclass(frozen=True)
class RunAhead:
    """The bound of one agent map: ``max_rows`` ahead, started ``batch_rows`` at a time."""

    max_rows: int
    batch_rows: int


def default_max_rows_ahead(concurrency: int, batch_size: int) -> int:
    """Two batches per map worker: one running, one answered and waiting to be read."""
    return 2 * concurrency * batch_size


def install(context: DataContext) -> None:
    """Add the policy to ``context`` (a dataset's own context); idempotent.

    The policy acts on the agent map operators only and leaves every other one to Ray
    Data's own policies, which stay in the list."""
    key = ray_policies.ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY
    policies = list(context.get_config(key, ray_policies.ENABLED_BACKPRESSURE_POLICIES))
    if RunAheadPolicy not in policies:
        context.set_config(key, [*policies, RunAheadPolicy])


def bound_of(op: Any) -> RunAhead | None:
    """The bound an agent map operator carries (None for any other operator).

    A physical operator keeps the logical operators it was planned from (several when
    Ray Data fused a read or a task map into it); ours passes a :class:`RunAhead` to its
    map workers' constructor."""
    for logical in getattr(op, "_logical_operators", ()):
        kwargs = getattr(logical, "fn_constructor_kwargs", None) or {}
        bound = kwargs.get(RUN_AHEAD_KWARG)
        if isinstance(bound, RunAhead):
            return bound
    return None


def rows_ahead(op: Any, state: Any, batch_rows: int) -> int:
    """Rows the operator has started that the next operator or consumer has not taken."""
    metrics = op.metrics
    # Inputs of running batches: exact when the input's row counts are known; a batch is
    # at least ``batch_rows`` rows (the actor pool bundles inputs up to batch_size), which
    # covers a fused read whose row count is unknown until it runs.
    running = max(metrics._pending_task_inputs.num_rows(), op.num_active_tasks() * batch_rows)
    # Answered, still inside the operator (not yet moved to its output queue) ...
    inside = metrics.rows_task_outputs_generated - metrics.row_outputs_taken
    # ... and in its output queue, which is the next operator's input (or the consumer's).
    queued = sum(queue.num_rows() for queue in state.output_queue._queues)
    return int(running + max(inside, 0) + queued)


class RunAheadPolicy(BackpressurePolicy):
    """Holds an agent map operator at ``max_rows_ahead`` rows ahead of its consumer."""

    @property
    def name(self) -> str:
        return "AgentRunAhead"

    def __init__(self, data_context: DataContext, topology: Any, resource_manager: Any) -> None:
        super().__init__(data_context, topology, resource_manager)
        self._bounds = {op: b for op in topology if (b := bound_of(op)) is not None}

    def can_add_input(self, op: Any) -> bool:
        bound = self._bounds.get(op)
        if bound is None:
            return True
        ahead = rows_ahead(op, self._topology[op], bound.batch_rows)
        return ahead + bound.batch_rows <= bound.max_rows
