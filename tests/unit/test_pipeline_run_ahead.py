"""The run-ahead bound of a lazily consumed agent map: its setting and its policy.

The policy runs inside Ray Data's streaming executor; here it meets stand-ins for the
operator and its queue (the integration test runs it for real)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from ray.data._internal.execution import backpressure_policy as ray_policies
from ray.data.context import DataContext

from ash_ray.errors import InvalidInput
from ash_ray.pipeline.data import run_ahead_bound
from ash_ray.pipeline.run_ahead import RunAhead, RunAheadPolicy, install


def test_the_default_is_two_batches_per_map_worker() -> None:
    assert run_ahead_bound(4, 8, None) == RunAhead(max_rows=64, batch_rows=8)
    assert run_ahead_bound(4, 8, 8) == RunAhead(max_rows=8, batch_rows=8)


@pytest.mark.parametrize(
    ("batch_size", "ahead", "message"),
    [
        (8, 7, r"max_rows_ahead must be at least batch_size \(8\).* got 7"),
        (8, 0, "at least batch_size"),
        (8, 2.5, "max_rows_ahead must be an integer, got 2.5"),
        (8, True, "max_rows_ahead must be an integer"),
        (0, None, "batch_size must be an integer >= 1, got 0"),
    ],
)
def test_a_bound_no_batch_fits_is_refused(batch_size: Any, ahead: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        run_ahead_bound(2, batch_size, ahead)


def test_install_adds_the_policy_once_beside_ray_datas_own() -> None:
    context = DataContext.get_current().copy()
    install(context)
    install(context)
    policies = context.get_config(ray_policies.ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY)
    assert policies == [*ray_policies.ENABLED_BACKPRESSURE_POLICIES, RunAheadPolicy]
    assert DataContext.get_current().get_config(
        ray_policies.ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY
    ) in (None, ray_policies.ENABLED_BACKPRESSURE_POLICIES), "the global context is untouched"


class Rows:
    def __init__(self, n: int = 0) -> None:
        self.n = n

    def num_rows(self) -> int:
        return self.n


class Op:
    """An operator: ``running`` batches of known rows, answered rows inside and queued."""

    def __init__(self, bound: RunAhead | None) -> None:
        kwargs = {"run_ahead": bound} if bound else {"other": 1}
        self._logical_operators = [SimpleNamespace(fn_constructor_kwargs=kwargs)]
        self.pending, self.active = Rows(), 0
        self.metrics = SimpleNamespace(
            _pending_task_inputs=self.pending, rows_task_outputs_generated=0, row_outputs_taken=0
        )

    def num_active_tasks(self) -> int:
        return self.active


def test_the_policy_holds_only_agent_maps_at_their_bound() -> None:
    agent, other = Op(RunAhead(max_rows=8, batch_rows=2)), Op(None)
    queue = Rows()
    topology = {
        agent: SimpleNamespace(output_queue=SimpleNamespace(_queues=[queue])),
        other: SimpleNamespace(output_queue=SimpleNamespace(_queues=[Rows(100)])),
    }
    policy = RunAheadPolicy(DataContext.get_current(), topology, None)
    assert policy.can_add_input(agent) and policy.can_add_input(other)

    agent.pending.n, agent.active = 4, 2  # two batches running
    queue.n = 2  # one answered, not read yet
    assert policy.can_add_input(agent), "6 rows ahead: a batch of 2 still fits in 8"
    agent.metrics.rows_task_outputs_generated = 1  # answered, not yet in the queue
    assert not policy.can_add_input(agent), "7 ahead: the next batch would make 9"
    assert policy.can_add_input(other)

    agent.metrics.row_outputs_taken = 1
    queue.n = 0  # the consumer read on
    assert policy.can_add_input(agent)


def test_a_running_batch_of_unknown_rows_counts_as_a_full_batch() -> None:
    agent = Op(RunAhead(max_rows=4, batch_rows=2))
    topology = {agent: SimpleNamespace(output_queue=SimpleNamespace(_queues=[Rows()]))}
    policy = RunAheadPolicy(DataContext.get_current(), topology, None)
    agent.active = 2  # e.g. a fused read: its rows are known only once it has run
    assert not policy.can_add_input(agent)
