"""The console's usage, queue, versions, keys, credentials and overview pages, driven like a
person would in a real headless Chromium; each test then checks what the API says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from ash_ray.testing.fake_anthropic import FakeAnthropic
from tests.helpers import wait_for
from tests.integration.browser import SCREENSHOTS, sign_in
from tests.integration.conftest import API_KEY
from tests.integration.sse import new_session, send

pytestmark = [pytest.mark.ray, pytest.mark.browser, pytest.mark.slow]


def region(page: Page, name: str) -> Locator:
    return page.get_by_role("region", name=name, exact=True)


def row_of(box: Locator, text: str) -> Locator:
    return box.get_by_role("row").filter(has_text=text)


def cell(row: Locator, column: str) -> Locator:
    return row.locator(f'td[data-label="{column}"]')


def test_overview_lists_live_sessions_by_node(page: Page, server: str, http: httpx.Client,
                                              agent: str) -> None:
    new_session(http, agent)

    def settled() -> dict[str, int] | None:
        # A new session counts as "binding" until its worker is placed on a node.
        found: dict[str, int] = httpx.get(f"{server}/health").json()["sessionsPerNode"]
        return found if found and "binding" not in found else None

    per_node = wait_for(settled, timeout_s=30, what="every live session on a node")
    sign_in(page, API_KEY)
    nodes = region(page, "Live sessions by node")
    for node, count in per_node.items():
        expect(cell(row_of(nodes, node[:8]), "Live sessions")).to_have_text(str(count))
    expect(nodes.get_by_role("row")).to_have_count(len(per_node) + 1)  # + the header


def test_usage_page_shows_the_apis_totals_per_agent(page: Page, http: httpx.Client,
                                                    agent: str) -> None:
    sid = new_session(http, agent)
    send(http, sid, "count me")
    send(http, sid, 'TOOL Bash {"command": "true"}')
    total = http.get("/api/usage/stats").json()["stats"]
    mine = http.get("/api/usage/stats", params={"agentName": agent}).json()["stats"]
    analytics = http.get("/api/analytics").json()
    assert mine["totalToolCalls"] >= 1 and mine["totalInputTokens"] > 0

    sign_in(page, API_KEY)
    page.get_by_role("link", name="Usage", exact=True).click()
    expect(page.get_by_role("heading", name="Usage", level=1)).to_be_visible()
    totals = region(page, "Totals")

    def counter(key: str) -> Locator:
        return totals.locator(f'dd[data-counter="{key}"]')

    for key in ("totalInputTokens", "totalOutputTokens", "totalToolCalls", "totalMessages"):
        expect(counter(key)).to_have_text(f"{total[key]:,}")
    row = row_of(region(page, "Usage by agent"), agent)
    expect(cell(row, "Input tokens")).to_have_text(f"{mine['totalInputTokens']:,}")
    expect(cell(row, "Tool calls")).to_have_text(f"{mine['totalToolCalls']:,}")
    sessions = region(page, "Sessions by status")
    expect(sessions.get_by_role("paragraph")).to_have_text(
        f"{analytics['sessions']['total']} sessions, {analytics['agents']['total']} agents")
    expect(region(page, "Tokens over time").get_by_role("img")).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "usage.png"), full_page=True)

    # One agent: the totals become that agent's.
    page.get_by_label("Agent", exact=True).select_option(agent)
    expect(counter("totalInputTokens")).to_have_text(f"{mine['totalInputTokens']:,}")
    expect(region(page, "Usage by agent").locator("tbody tr")).to_have_count(1)


def queued(http: httpx.Client, prompt: str, status: str | None = None) -> list[dict[str, Any]]:
    params = {"status": status, "limit": 500} if status else {"limit": 500}
    return [i for i in http.get("/api/queue", params=params).json()["items"]
            if i["prompt"] == prompt]


def enqueue(page: Page, agent: str, prompt: str, priority: int = 0) -> None:
    page.get_by_label("Agent", exact=True).select_option(agent)
    page.get_by_label("Prompt", exact=True).fill(prompt)
    page.get_by_label("Priority", exact=True).fill(str(priority))
    page.get_by_role("button", name="Enqueue").click()
    expect(page.get_by_role("status")).to_contain_text("Queued")


def test_queue_page_enqueues_filters_and_cancels(
    page: Page, http: httpx.Client, agent: str, fake_model: FakeAnthropic
) -> None:
    # Both queue slots (ASH_QUEUE_CONCURRENCY=2) busy: what the page enqueues stays pending.
    holds = [fake_model.hold(f"console-blocker-{i}") for i in range(2)]
    blockers = []
    try:
        for i in range(2):
            r = http.post("/api/queue", json={"agentName": agent, "prompt": f"console-blocker-{i}"})
            blockers.append(r.json()["item"]["id"])
        for h in holds:
            h.wait_seen(60)
        sign_in(page, API_KEY)
        page.get_by_role("link", name="Queue").click()
        enqueue(page, agent, "from the console", priority=3)
        [item] = queued(http, "from the console", "pending")
        assert item["priority"] == 3 and item["agentName"] == agent

        page.get_by_label("Status", exact=True).select_option("pending")
        items = region(page, "Items")
        expect(row_of(items, "from the console")).to_have_count(1)
        # The blockers run (processing): only the filtered list has no other status.
        expect(items.locator(".badge:not(.status-pending)")).to_have_count(0)
        pending = http.get("/api/queue/stats").json()["stats"]["pending"]
        expect(region(page, "Queue stats").locator('dd[data-status="pending"]')).to_have_text(
            str(pending))

        page.get_by_role("button", name=f"Cancel item {item['id'][:8]}").click()
        expect(page.get_by_role("status")).to_contain_text("Cancelled")
        assert http.get(f"/api/queue/{item['id']}").json()["item"]["status"] == "cancelled"
        expect(row_of(items, "from the console")).to_have_count(0)  # no longer pending
        page.get_by_label("Status", exact=True).select_option("cancelled")
        expect(cell(row_of(items, "from the console"), "Status")).to_have_text("cancelled")
    finally:
        for h in holds:
            h.release()

    # With the slots free, an item enqueued here runs; the page shows its answer.
    enqueue(page, agent, "queued and run")
    done = wait_for(lambda: queued(http, "queued and run", "completed"), timeout_s=60,
                    what="the page's item completes")
    assert done[0]["result"] == "echo: queued and run"
    page.get_by_label("Status", exact=True).select_option("completed")
    expect(cell(row_of(items, "queued and run"), "Outcome")).to_have_text("echo: queued and run")
    page.get_by_label("Status", exact=True).select_option("")
    expect(row_of(items, "from the console")).to_have_count(1)
    page.screenshot(path=str(SCREENSHOTS / "queue.png"), full_page=True)
    for b in blockers:
        wait_for(lambda b=b: http.get(f"/api/queue/{b}").json()["item"]["status"] == "completed",
                 timeout_s=60, what="blocker done")


def test_agent_versions_create_and_activate(page: Page, http: httpx.Client,
                                            agent_dir: Path) -> None:
    name = "versioned"
    assert http.post("/api/agents", json={"name": name, "path": str(agent_dir)}).status_code == 201
    sign_in(page, API_KEY)
    page.goto(f"/dashboard/#/agents/{name}")
    versions = region(page, "Versions")
    for label, prompt in (("first", "You are version one."), ("second", "You are version two.")):
        page.get_by_label("Version name").fill(label)
        page.get_by_label("Version system prompt").fill(prompt)
        page.get_by_role("button", name="Create version").click()
        expect(row_of(versions, prompt)).to_have_count(1)
    listed = http.get(f"/api/agents/{name}/versions").json()["versions"]
    assert {v["name"]: v["systemPrompt"] for v in listed} == {
        "first": "You are version one.", "second": "You are version two."}

    def active() -> list[str]:
        found = http.get(f"/api/agents/{name}/versions").json()["versions"]
        return [v["name"] for v in found if v["isActive"]]

    by_name = {v["name"]: v["versionNumber"] for v in listed}
    for target in ("second", "first"):  # none is active when created
        page.get_by_role("button", name=f"Activate version {by_name[target]}").click()
        expect(cell(row_of(versions, f"You are version {'two' if target == 'second' else 'one'}"),
                    "Active")).to_have_text("active")
        assert active() == [target]
        other = by_name["first" if target == "second" else "second"]
        expect(page.get_by_role("button", name=f"Activate version {other}")).to_be_visible()
    assert http.delete(f"/api/agents/{name}").status_code in (200, 204)


def test_api_key_is_shown_once_and_revoking_it_locks_it_out(
    page: Page, server: str, http: httpx.Client
) -> None:
    sign_in(page, API_KEY)
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Label", exact=True).fill("console key")
    page.get_by_role("button", name="Create key").click()
    secret_box = page.locator("code.secret")
    expect(secret_box).to_be_visible()
    secret = secret_box.inner_text()
    assert secret.startswith("ash_"), secret
    as_new = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(f"{server}/api/agents", headers=as_new).status_code == 200
    [listed] = [k for k in http.get("/api/api-keys").json() if k["label"] == "console key"]
    assert listed["keyPrefix"].startswith(secret[:8]) and secret not in str(listed)
    keys = region(page, "API keys")
    expect(row_of(keys, "console key")).to_have_count(1)

    # Shown once: the page again (same tab, still signed in) has the list, not the key.
    page.reload()
    expect(row_of(keys, "console key")).to_have_count(1)
    assert secret not in page.content()

    page.get_by_role("button", name="Revoke key console key").click()
    expect(row_of(keys, "console key")).to_have_count(0)
    assert not [k for k in http.get("/api/api-keys").json() if k["label"] == "console key"]
    wait_for(lambda: httpx.get(f"{server}/api/agents", headers=as_new).status_code == 401,
             timeout_s=10, what="the revoked key refused")


def test_credentials_are_stored_listed_and_deleted_never_shown(
    page: Page, http: httpx.Client
) -> None:
    secret = "sk-ant-console-secret-0123456789"
    sign_in(page, API_KEY)
    page.get_by_role("link", name="Credentials").click()
    page.get_by_label("Type", exact=True).select_option("anthropic")
    page.get_by_label("Key", exact=True).fill(secret)
    page.get_by_label("Label", exact=True).fill("console cred")
    page.get_by_label("Base URL", exact=True).fill("https://gateway.example.test/v1")
    page.get_by_role("button", name="Store credential").click()
    creds = region(page, "Credentials")
    expect(cell(row_of(creds, "console cred"), "Type")).to_have_text("anthropic")
    endpoint = cell(row_of(creds, "console cred"), "Endpoint")
    expect(endpoint).to_have_text("https://gateway.example.test/v1")
    expect(page.get_by_label("Key", exact=True)).to_have_value("")
    listing = http.get("/api/credentials")
    [stored] = [c for c in listing.json()["credentials"] if c["label"] == "console cred"]
    assert stored["type"] == "anthropic" and secret not in listing.text
    assert stored["baseUrl"] == "https://gateway.example.test/v1"
    assert secret not in page.content()

    page.get_by_role("button", name="Delete credential console cred").click()
    expect(row_of(creds, "console cred")).to_have_count(0)
    ids = {c["id"] for c in http.get("/api/credentials").json()["credentials"]}
    assert stored["id"] not in ids


def test_evals_page_adds_a_case_runs_it_and_shows_its_result(
    page: Page, http: httpx.Client, agent: str
) -> None:
    base = f"/api/agents/{agent}"
    before = {r["id"] for r in http.get(f"{base}/eval-runs").json()["runs"]}
    sign_in(page, API_KEY)
    page.get_by_role("link", name="Evals").click()
    page.get_by_label("Agent", exact=True).select_option(agent)
    question = "say hello from the console"
    page.get_by_label("Question", exact=True).fill(question)
    page.get_by_label("Expected topics", exact=True).fill("echo, hello")
    page.get_by_role("button", name="Add case").click()
    expect(row_of(region(page, "Eval cases"), question)).to_have_count(1)
    [case] = [c for c in http.get(f"{base}/eval-cases").json()["cases"]
              if c["question"] == question]
    assert case["expectedTopics"] == ["echo", "hello"]

    page.get_by_role("button", name="Run evals").click()
    run_id = wait_for(lambda: next(iter({r["id"] for r in http.get(f"{base}/eval-runs")
                                         .json()["runs"]} - before), None),
                      what="the run the page started")  # fmt: skip

    def finished() -> dict[str, Any] | None:
        run: dict[str, Any] = http.get(f"{base}/eval-runs/{run_id}").json()["run"]
        return run if run["status"] in ("completed", "failed") else None

    assert wait_for(finished, timeout_s=120, what="the eval run")["status"] == "completed"
    page.get_by_role("button", name="Refresh runs").click()
    runs = region(page, "Eval runs")
    expect(cell(row_of(runs, run_id[:8]), "Status")).to_have_text("completed")
    page.get_by_role("button", name=f"Results of run {run_id[:8]}").click()
    mine = row_of(region(page, f"Results of run {run_id[:8]}"), question)
    expect(cell(mine, "Passed")).to_have_text("yes")
    expect(cell(mine, "Topic score")).to_have_text("1.00")
