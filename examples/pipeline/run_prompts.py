"""Call an ash-ray agent from Ray: one session by hand, then a Ray Data pipeline.

Against a running ash-ray (``ash-ray start``, ``ash-ray serve`` or the Helm chart), from
any machine of its Ray cluster::

    ash-ray deploy examples/pipeline/summariser --name summariser
    RAY_ADDRESS=<gcs host:port> python examples/pipeline/run_prompts.py --agent summariser

Without an API key or a cluster: ``--demo`` starts Ray on 127.0.0.1, the fake Anthropic
API that ships with ash-ray and the registry in this process, deploys the example agent
and runs the same code (the fake answers ``echo: <prompt>``)::

    python examples/pipeline/run_prompts.py --demo --rows 20
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import ray
import ray.data

from ash_ray.pipeline import AshRay, connect, run_prompts

HERE = Path(__file__).resolve().parent
TEXTS = [
    "Ray is a framework for scaling Python applications across a cluster.",
    "Ray Data streams datasets through map functions running on many workers.",
    "Bubblewrap runs a process in new Linux namespaces without setuid root.",
    "SQLite is a small, fast, self-contained SQL database engine.",
]
SCHEMA = {
    "type": "json_schema",
    "schema": {
        "type": "object",
        "properties": {"topic": {"type": "string"}, "words": {"type": "integer"}},
        "required": ["topic"],
    },
}


def one_session(ash: AshRay, agent: str) -> None:
    """A session by hand: blocking ask, structured output, streaming."""
    with ash.session(agent) as session:  # ended when the block exits
        print(f"session {session.id} (also at GET /api/sessions/{session.id})")
        out = ray.get(session.ask.remote(f"Summarise: {TEXTS[0]}"))
        print(f"  answer: {out['result']!r}  turns={out['numTurns']}  usage={out['usage']}")

        out = ray.get(session.ask.remote(f"Topic of: {TEXTS[1]}", output_format=SCHEMA))
        print(f"  structured: {out['structuredOutput']!r}")

        for ref in session.ask_stream.remote(f"Summarise: {TEXTS[2]}"):
            seq, kind, data = ray.get(ref)  # the events of the SSE stream, numbered
            if kind in ("session_start", "turn_complete", "done"):
                print(f"  event {seq} {kind} {data}")


def pipeline(agent: str, rows: int, concurrency: int) -> None:
    """A column of prompts through the agent; every session is ended before it returns."""
    items = [{"id": i, "prompt": f"Summarise: {TEXTS[i % len(TEXTS)]}"} for i in range(rows)]
    ds = ray.data.from_items(items)
    answers = run_prompts(ds, agent, concurrency=concurrency, session_per="worker")
    rows_out = sorted(answers.take_all(), key=lambda r: r["id"])
    for row in rows_out:
        status = row["error"] or f"{row['output_tokens']} tokens"
        print(f"  {row['id']:>3}  {str(row['answer'])[:60]:<60}  {status}")
    print(f"{len(rows_out)} rows, {len({r['session_id'] for r in rows_out})} sessions")


def demo_cluster() -> None:
    """Ray on loopback, the fake model, the registry, the example agent (no Serve)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    from ash_ray import app
    from ash_ray.config import load_settings
    from ash_ray.testing.fake_anthropic import FakeAnthropic

    fake = FakeAnthropic(port=0)
    fake.start()
    # The fake echoes; for the structured call it is told to answer JSON once.
    fake.script("Ray scales Python.", '{"topic": "Ray Data", "words": 11}')
    settings = load_settings(
        data_dir=tempfile.mkdtemp(prefix="ash-demo-"),
        anthropic_api_key="demo",
        anthropic_base_url=fake.url,
        session_num_cpus=0.01,
        dashboard=False,
    )
    ray.init(address="local", namespace=settings.namespace, include_dashboard=False,
             log_to_driver=False)  # fmt: skip
    registry = app.ensure_registry(settings)
    ray.get(registry.deploy_agent.remote("summariser", str(HERE / "summariser")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="summariser")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--namespace", default="ash")
    parser.add_argument("--demo", action="store_true", help="local Ray + fake model")
    args = parser.parse_args()

    if args.demo:
        demo_cluster()
    else:
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), namespace=args.namespace)
    ash = connect(args.namespace)
    one_session(ash, args.agent)
    pipeline(args.agent, args.rows, args.concurrency)
    left = [w for w in ash.live() if w.get("agent") == args.agent]
    print(f"live sessions of {args.agent!r} left: {len(left)}")


if __name__ == "__main__":
    main()
