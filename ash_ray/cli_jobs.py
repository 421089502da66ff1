"""``ash-ray queue``, ``ash-ray usage`` and ``ash-ray eval``: the jobs routes from a shell.

Long work (waiting for a queue item, an eval run) shows rich progress on stderr; the
answer itself goes to stdout, as a table or, with ``--json``, as the API's JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

DONE = ("completed", "failed", "cancelled")


class _Client(Protocol):
    def call(self, method: str, path: str, **kw: Any) -> Any: ...


ClientOf = Callable[[argparse.Namespace], _Client]


def _table(title: str, cols: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for col in cols:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)


def _dump(data: Any) -> None:
    print(json.dumps(data, indent=2))


# ---------------------------------------------------------------------- queue


def cmd_queue(args: argparse.Namespace, client: _Client) -> int:
    if args.action == "add":
        body: dict[str, Any] = {"agentName": args.agent, "prompt": args.prompt,
                                "priority": args.priority, "maxRetries": args.max_retries}
        if args.session:
            body["sessionId"] = args.session
        item = client.call("POST", "/api/queue", json=body)["item"]
        if args.wait:
            item = _wait_item(client, item["id"])
        _dump(item) if args.json else print(f"{item['id']} {item['status']}")
        return 1 if item["status"] == "failed" else 0
    if args.action == "list":
        params = {"limit": args.limit, **({"status": args.status} if args.status else {})}
        items = client.call("GET", "/api/queue", params=params)["items"]
        if args.json:
            _dump(items)
        else:
            _table("queue", ["id", "status", "agent", "priority", "retries", "created"],
                   [[i["id"], i["status"], i["agentName"], i["priority"], i["retryCount"],
                     i["createdAt"]] for i in items])
    elif args.action == "stats":
        _dump(client.call("GET", "/api/queue/stats")["stats"])
    elif args.action == "get":
        _dump(client.call("GET", f"/api/queue/{args.id}")["item"])
    elif args.action == "cancel":
        item = client.call("DELETE", f"/api/queue/{args.id}")["item"]
        print(f"{item['id']} {item['status']}")
    return 0


def _wait_item(client: _Client, item_id: str) -> dict[str, Any]:
    with Progress(SpinnerColumn(), TextColumn("{task.description}"),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("queued")
        while True:
            item: dict[str, Any] = client.call("GET", f"/api/queue/{item_id}")["item"]
            progress.update(task, description=f"{item['status']} (retries {item['retryCount']})")
            if item["status"] in DONE:
                return item
            time.sleep(0.5)


# ---------------------------------------------------------------------- usage


def cmd_usage(args: argparse.Namespace, client: _Client) -> int:
    params = {k: v for k, v in (("sessionId", args.session), ("agentName", args.agent),
                                ("after", args.after), ("before", args.before)) if v}
    if args.events:
        events = client.call("GET", "/api/usage", params={**params, "limit": args.limit})
        if args.json:
            _dump(events["events"])
        else:
            _table("usage events", ["time", "session", "agent", "type", "value"],
                   [[e["createdAt"], e["sessionId"], e["agentName"], e["eventType"], e["value"]]
                    for e in events["events"]])
        return 0
    stats = client.call("GET", "/api/usage/stats", params=params)["stats"]
    if args.json:
        _dump(stats)
    else:
        _table("usage", ["figure", "total"], [[k, v] for k, v in stats.items()])
    return 0


# ---------------------------------------------------------------------- evals


def cmd_eval(args: argparse.Namespace, client: _Client) -> int:
    base = f"/api/agents/{args.agent}"
    if args.action == "run":
        body: dict[str, Any] = {}
        if args.version:
            body["versionNumber"] = args.version
        if args.category:
            body["categories"] = args.category
        if args.tag:
            body["tags"] = args.tag
        run = client.call("POST", f"{base}/eval-runs", json=body)["run"]
        if not args.no_wait:
            run = _wait_run(client, base, run)
        _show_run(client, base, run, args.json)
        return 0 if run["status"] != "failed" else 1
    if args.action == "list":
        runs = client.call("GET", f"{base}/eval-runs")["runs"]
        _dump(runs) if args.json else _table(
            f"eval runs of {args.agent}", ["id", "status", "version", "cases", "pass rate"],
            [[r["id"], r["status"], r["versionNumber"], r["totalCases"], r["passRate"]]
             for r in runs])
        return 0
    run = client.call("GET", f"{base}/eval-runs/{args.run}")["run"]
    _show_run(client, base, run, args.json)
    return 0


def _wait_run(client: _Client, base: str, run: dict[str, Any]) -> dict[str, Any]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("eval run", total=run["totalCases"])
        while run["status"] not in ("completed", "failed"):
            time.sleep(0.5)
            run = client.call("GET", f"{base}/eval-runs/{run['id']}")["run"]
            progress.update(task, completed=run["completedCases"],
                            description=f"eval run {run['status']}")
    return run


def _show_run(client: _Client, base: str, run: dict[str, Any], as_json: bool) -> None:
    results = client.call("GET", f"{base}/eval-runs/{run['id']}/results")["results"]
    if as_json:
        _dump({"run": run, "results": results})
        return
    _table(f"run {run['id']}: {run['status']}, pass rate {run['passRate']}",
           ["question", "status", "topic", "safety", "judge", "passed"],
           [[r["question"], r["status"], r["topicScore"], r["safetyScore"], r["llmJudgeScore"],
             r["passed"]] for r in results])


# ---------------------------------------------------------------------- parsers


def add_jobs_parsers(sub: Any, client_of: ClientOf) -> None:
    """Add the queue, usage and eval commands to the ``ash-ray`` parser."""

    def bind(func: Callable[[argparse.Namespace, _Client], int]) -> Callable[..., int]:
        return lambda args: func(args, client_of(args))

    qp = sub.add_parser("queue", help="queue prompts and follow them")
    qp.add_argument("--json", action="store_true")
    qs = qp.add_subparsers(dest="action", required=True)
    add = qs.add_parser("add")
    add.add_argument("agent")
    add.add_argument("prompt")
    add.add_argument("--session")
    add.add_argument("--priority", type=int, default=0)
    add.add_argument("--max-retries", type=int, default=3)
    add.add_argument("--wait", action="store_true", help="wait until it is done")
    ls = qs.add_parser("list")
    ls.add_argument("--status")
    ls.add_argument("--limit", type=int, default=50)
    qs.add_parser("stats")
    for action in ("get", "cancel"):
        qs.add_parser(action).add_argument("id")
    qp.set_defaults(func=bind(cmd_queue))

    up = sub.add_parser("usage", help="token, tool and compute totals (or --events)")
    for flag in ("--session", "--agent", "--after", "--before"):
        up.add_argument(flag)
    up.add_argument("--events", action="store_true")
    up.add_argument("--limit", type=int, default=100)
    up.add_argument("--json", action="store_true")
    up.set_defaults(func=bind(cmd_usage))

    ep = sub.add_parser("eval", help="run an agent's eval cases and show the results")
    ep.add_argument("--json", action="store_true")
    es = ep.add_subparsers(dest="action", required=True)
    run = es.add_parser("run")
    run.add_argument("agent")
    run.add_argument("--version", type=int)
    run.add_argument("--category", action="append")
    run.add_argument("--tag", action="append")
    run.add_argument("--no-wait", action="store_true")
    show = es.add_parser("show")
    show.add_argument("agent")
    show.add_argument("run")
    es.add_parser("list").add_argument("agent")
    ep.set_defaults(func=bind(cmd_eval))
