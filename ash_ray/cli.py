"""The ``ash-ray`` command: run the server, and talk to it over HTTP."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from ash_ray import __version__, deploy_cli
from ash_ray.chat import add_chat_parser, add_session_parsers
from ash_ray.cli_jobs import add_jobs_parsers
from ash_ray.cli_tenants import add_tenant_parsers
from ash_ray.errors import AshError
from ash_ray.transfer import add_transfer_parsers

DEFAULT_URL = "http://127.0.0.1:4100"


def out(text: str = "", *, err: bool = False, end: str = "\n") -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + end)
    stream.flush()


# ---------------------------------------------------------------------- HTTP client


class Client:
    def __init__(self, url: str, api_key: str | None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=60)
        self.url = url

    def call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise SystemExit(f"error: cannot reach ash-ray at {self.url}: {exc}") from None
        if resp.status_code >= 400:
            try:
                msg = resp.json().get("error", resp.text)
            except ValueError:
                msg = resp.text
            raise SystemExit(f"error: {resp.status_code}: {msg}")
        return resp.json()

    def stream(self, path: str, body: dict[str, Any]) -> Any:
        with self.http.stream("POST", path, json=body, timeout=httpx.Timeout(60, read=None)) as r:
            if r.status_code >= 400:
                r.read()
                raise SystemExit(f"error: {r.status_code}: {r.json().get('error', r.text)}")
            event = "message"
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    yield event, json.loads(line[6:])


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url, args.api_key)


def _print_json(data: Any) -> None:
    out(json.dumps(data, indent=2))


# ---------------------------------------------------------------------- server commands


def cmd_start(args: argparse.Namespace) -> int:
    """Local Ray (loopback) + Serve + registry, in the foreground."""
    from ash_ray.config import load_settings

    settings = load_settings(**_overrides(args))
    # Ray reads this when it is imported: then its node and every service bind 127.0.0.1.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    from ash_ray import app, cluster_file, supervise
    from ash_ray.logs import configure_logging

    configure_logging(settings)
    app.prepare_ray_env(settings)
    out(f"starting ash-ray {__version__}: local Ray on 127.0.0.1 ...", err=True)
    # A SIGTERM to our whole group (systemd) must not reach Ray's daemons before we drain.
    supervise.isolate_ray_processes()
    stop = supervise.Shutdown(settings.drain_timeout_s)
    ray.init(
        address="local",
        namespace=settings.namespace,
        include_dashboard=settings.dashboard,
        dashboard_host="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    stop.install()  # after ray.init, which sets its own SIGTERM handler
    try:
        app.ensure_registry(settings)
        ingress = app.start_serve(settings)
        _wait_healthy(f"http://127.0.0.1:{settings.port}")
        _announce(settings, ray)
        out(f"  ingress:   {ingress}")
        out(f"  ray info:  {cluster_file.write(settings, ray)}  (read by connect(), ash-ray ps)")
        stop.wait()
        out("draining: pausing and snapshotting live sessions ...", err=True)
        result = app.drain(settings, stop.drain_budget())
        stop.drained = True
        out(f"paused {result.paused} session(s); stopping", err=True)
    finally:
        cluster_file.remove(settings.data_dir)
        from ray import serve

        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Container entry point: head pod starts Ray + Serve; other pods join the head."""
    from ash_ray import node
    from ash_ray.config import load_settings
    from ash_ray.logs import configure_logging

    settings = load_settings(**_overrides(args))
    configure_logging(settings)
    if node.role(settings) == "worker":
        out(f"joining Ray head at {settings.ray_head_address}", err=True)
        return node.run_worker(settings)
    return node.run_head(settings, _announce)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    over: dict[str, Any] = {}
    for key in ("host", "port", "data_dir"):
        value = getattr(args, key, None)
        if value is not None:
            over[key] = value
    return over


def _wait_healthy(url: str, timeout_s: float = 120) -> None:
    from tenacity import RetryError, Retrying, stop_after_delay, wait_fixed

    def healthy() -> None:
        httpx.get(url + "/health", timeout=5).raise_for_status()

    try:
        Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(0.25))(healthy)
    except RetryError:
        raise SystemExit(f"error: ash-ray did not become healthy at {url}") from None


def _announce(settings: Any, ray: Any) -> None:
    where = settings.database_url.split("@")[-1] if settings.database_url else settings.sqlite_path
    out(f"ash-ray {__version__} listening on http://{settings.host}:{settings.port}")
    out(f"  ray:       {ray.get_runtime_context().gcs_address}  (GCS address for drivers)")
    out(f"  store:     {settings.store_kind} ({where})")
    out(f"  data dir:  {settings.data_dir}")
    auth = "on (Bearer ASH_API_KEY)" if settings.auth_enabled else "OFF (set ASH_API_KEY)"
    out(f"  auth:      {auth}")
    model = settings.anthropic_base_url or "https://api.anthropic.com"
    out(f"  model API: {model}")
    ctx = ray.get_runtime_context()
    dash = getattr(ray, "_private", None) and ray._private.worker.get_dashboard_url()
    if dash:
        out(f"  dashboard: http://{dash}")
    out(f"  ray node:  {ctx.get_node_id()[:12]}  (Ctrl-C to stop)")


# ---------------------------------------------------------------------- client commands


def cmd_health(args: argparse.Namespace) -> int:
    _print_json(_client(args).call("GET", "/health"))
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    path = Path(args.dir).expanduser().resolve()
    name = args.name or path.name
    agent = deploy_cli.deploy(_client(args), path, name, args.env or [])
    out(f"deployed agent {agent['name']} v{agent['version']} from {path}")
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    c = _client(args)
    if args.action == "list":
        for a in c.call("GET", "/api/agents")["agents"]:
            out(f"{a['name']:<24} v{a['version']:<4} {a['path']}")
    elif args.action == "get":
        _print_json(c.call("GET", f"/api/agents/{args.name}")["agent"])
    elif args.action == "delete":
        c.call("DELETE", f"/api/agents/{args.name}")
        out(f"deleted agent {args.name}")
    return 0


def cmd_session(args: argparse.Namespace) -> int:
    c = _client(args)
    action = args.action
    if action == "create":
        body: dict[str, Any] = {"agent": args.agent}
        if args.model:
            body["model"] = args.model
        s = c.call("POST", "/api/sessions", json=body)["session"]
        out(s["id"])
    elif action == "list":
        params = {k: v for k, v in (("agent", args.agent), ("status", args.status)) if v}
        for s in c.call("GET", "/api/sessions", params=params)["sessions"]:
            out(f"{s['id']}  {s['status']:<8} {s['agentName']:<20} {s['lastActiveAt']}")
    elif action == "get":
        _print_json(c.call("GET", f"/api/sessions/{args.id}")["session"])
    elif action == "send":
        return _send(c, args.id, args.message)
    elif action == "end":
        s = c.call("DELETE", f"/api/sessions/{args.id}")["session"]
        out(f"{s['id']} {s['status']}")
    else:  # pause, resume, stop, fork
        s = c.call("POST", f"/api/sessions/{args.id}/{action}")["session"]
        out(f"{s['id']} {s['status']}")
    return 0


def _send(c: Client, session_id: str, message: str) -> int:
    body = {"content": message, "includePartialMessages": True}
    streamed = False
    code = 0
    for event, data in c.stream(f"/api/sessions/{session_id}/messages", body):
        if event == "text_delta":
            out(data["delta"], end="")
            streamed = True
        elif event == "tool_use":
            out(f"\n[tool {data['name']}] {json.dumps(data['input'])[:200]}", err=True)
        elif event == "tool_result" and data.get("is_error"):
            out(f"[tool error] {str(data.get('content'))[:200]}", err=True)
        elif event == "turn_complete" and not streamed:
            out(data.get("result") or "", end="")
        elif event == "error":
            out(f"\nerror: {data['error']}", err=True)
            code = 1
    out()
    return code


def cmd_ps(args: argparse.Namespace) -> int:
    from ash_ray import cluster_file
    from ash_ray.inspect import live_sessions

    rows = live_sessions(cluster_file.prepare_driver(args.address), args.namespace)
    if args.json:
        _print_json(rows)
        return 0
    cols = ("sessionId", "agent", "status", "turnRunning", "nodeId", "pid", "idleSeconds", "rssMB")
    out("  ".join(f"{c:<12}" for c in cols))
    for r in rows:
        out("  ".join(f"{str(r.get(c, ''))[:36]:<12}" for c in cols))
    return 0


# ---------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ash-ray", description="Claude agents as HTTP APIs on Ray")
    p.add_argument("--version", action="version", version=__version__)
    p.add_argument("--url", default=os.environ.get("ASH_URL", DEFAULT_URL), help="server URL")
    p.add_argument("--api-key", default=os.environ.get("ASH_API_KEY") or None)
    sub = p.add_subparsers(dest="command", required=True)

    for name, func, helptext in (
        ("start", cmd_start, "run locally: Ray on loopback, Serve, SQLite (foreground)"),
        ("serve", cmd_serve, "run in a container or on a Ray cluster"),
    ):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("--host")
        sp.add_argument("--port", type=int)
        sp.add_argument("--data-dir")
        sp.set_defaults(func=func)

    sub.add_parser("health", help="server health").set_defaults(func=cmd_health)

    dp = sub.add_parser("deploy", help="deploy an agent folder (with CLAUDE.md)")
    dp.add_argument("dir")
    dp.add_argument("-n", "--name")
    dp.add_argument(
        "-e", "--env", action="append", metavar="K=V",
        help="agent env (wins over .env and .env.local); repeatable",
    )
    dp.set_defaults(func=cmd_deploy)

    ap = sub.add_parser("agent", help="list, get or delete agents")
    ap.add_argument("action", choices=["list", "get", "delete"])
    ap.add_argument("name", nargs="?")
    ap.set_defaults(func=cmd_agent)

    _add_session_parser(sub)
    add_chat_parser(sub)
    add_jobs_parsers(sub, _client)
    add_tenant_parsers(sub)

    pp = sub.add_parser("ps", help="live session workers from Ray's state API")
    pp.add_argument("--json", action="store_true")
    pp.add_argument("--address", help="GCS address (default: ASH_RAY_ADDRESS, a local start, auto)")
    pp.add_argument("--namespace", default=os.environ.get("ASH_NAMESPACE", "ash"))
    pp.set_defaults(func=cmd_ps)

    try:
        from ash_ray.kuberay.cli import add_kuberay_parser
    except ImportError:  # pragma: no cover - the kuberay package is part of the install
        pass
    else:
        add_kuberay_parser(sub)
    return p


def _add_session_parser(sub: Any) -> None:
    sp = sub.add_parser("session", help="create, send to, list and manage sessions")
    ssub = sp.add_subparsers(dest="action", required=True)
    c = ssub.add_parser("create")
    c.add_argument("agent")
    c.add_argument("--model")
    ls = ssub.add_parser("list")
    ls.add_argument("--agent")
    ls.add_argument("--status")
    snd = ssub.add_parser("send")
    snd.add_argument("id")
    snd.add_argument("message")
    for action in ("get", "pause", "resume", "stop", "end", "fork"):
        ssub.add_parser(action).add_argument("id")
    add_session_parsers(ssub)  # files, exec, tail, logs: their own func wins
    add_transfer_parsers(ssub)  # download, upload (the workspace as tar.gz)
    sp.set_defaults(func=cmd_session)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("agent",) and args.action in ("get", "delete") and not args.name:
        raise SystemExit("error: agent name required")
    try:
        return int(args.func(args) or 0)
    except AshError as exc:
        raise SystemExit(f"error: {exc}") from None
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
