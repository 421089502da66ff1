"""Ray-native API: call agents from Ray drivers, tasks and Ray Data pipelines.

::

    import ray
    from ash_ray.pipeline import connect, run_prompts

    ray.init(address="auto")
    ash = connect()                      # the registry in namespace "ash"
    with ash.session("helper") as s:     # ended on exit
        out = ray.get(s.ask.remote("Summarise README.md"))
        print(out["result"], out["usage"], out["numTurns"])

    answers = run_prompts(ray.data.from_items(rows), "helper", concurrency=4)

Sessions made here are ordinary sessions: the HTTP API lists and serves them, and the
registry's capacity and the sandbox apply to them. See ``docs/ray.md``.
"""

from ash_ray.pipeline.client import AgentSession, AshRay, ask, connect
from ash_ray.pipeline.data import PipelineSessions, run_prompts

__all__ = ["AgentSession", "AshRay", "PipelineSessions", "ask", "connect", "run_prompts"]
