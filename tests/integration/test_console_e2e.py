"""The web console in a real headless Chromium against a real server with the fake model."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.integration.browser import SCREENSHOTS, sign_in
from tests.integration.conftest import API_KEY
from tests.integration.sse import new_session, send

pytestmark = [pytest.mark.ray, pytest.mark.browser, pytest.mark.slow]

# The tool call waits in the sandbox until the test creates `go` in the workspace (through
# exec): an explicit latch, so the page is reloaded while the turn is surely running.
HOLD = 'TOOL Bash {"command": "until [ -f go ]; do sleep 0.05; done; echo released"}'


def test_page_without_a_key_shows_no_data(
    page: Page, server: str, http: httpx.Client, agent: str
) -> None:
    sid = new_session(http, agent)
    send(http, sid, "a secret conversation")
    api_calls: list[tuple[str, int]] = []
    page.on("response", lambda r: api_calls.append((r.url, r.status)) if "/api/" in r.url else None)
    for route in ("#/", "#/agents", "#/sessions", f"#/sessions/{sid}", f"#/agents/{agent}"):
        page.goto(f"/dashboard/{route}")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        text = page.locator("main").inner_text()
        assert sid[:8] not in text and agent not in text and "secret" not in text
    assert api_calls == [], "the console asked for data without a key"
    for name in ("", "app.js", "api.js", "session.js"):
        assert API_KEY not in httpx.get(f"{server}/dashboard/{name}").text

    # A wrong key is refused and shows nothing either.
    page.get_by_label("API key").fill("not-the-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That key was refused.")
    assert "helper" not in page.locator("main").inner_text()
    assert page.evaluate("sessionStorage.length") == 0


def test_deploy_chat_reload_mid_turn_files_stop_resume(
    page: Page, http: httpx.Client, agent_dir: Path
) -> None:
    sign_in(page, API_KEY)
    page.get_by_role("link", name="Agents").click()
    page.get_by_label("Name").fill("console-agent")
    page.get_by_label("Path on the server").fill(str(agent_dir))
    page.get_by_role("button", name="Deploy").click()
    expect(page.get_by_role("heading", name="Agent console-agent")).to_be_visible()
    page.get_by_role("button", name="New session").click()
    page.wait_for_url(re.compile(r"#/sessions/[0-9a-f-]{36}$"))
    sid = page.url.rsplit("/", 1)[1]
    badge = page.locator(".page-head .badge")
    expect(badge).to_have_text("active")

    composer = page.get_by_role("textbox", name="Message")
    turns = page.locator(".turn")

    # Streamed text.
    composer.fill("hello console")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(turns.nth(0).locator(".prompt")).to_contain_text("hello console")
    expect(turns.nth(0).locator(".text")).to_have_text("echo: hello console")

    # A tool call, folded with its input and result.
    composer.fill('TOOL Bash {"command": "echo hi > out.txt"}')
    page.get_by_role("button", name="Send", exact=True).click()
    tool = turns.nth(1).locator("details.tool")
    expect(tool.locator(".tool-status")).to_have_text("done")
    expect(tool.locator(".tool-name")).to_have_text("Bash")
    expect(tool.locator(".tool-input")).not_to_be_visible()  # folded
    tool.locator("summary").click()
    expect(tool.locator(".tool-input")).to_contain_text("echo hi > out.txt")
    expect(turns.nth(1).locator(".text")).to_contain_text("tool said:")

    # Reload while a turn runs: the page re-attaches and shows the rest.
    composer.fill(HOLD)
    page.get_by_role("button", name="Send", exact=True).click()
    expect(turns.nth(2).locator("details.tool.running")).to_have_count(1)
    page.reload()
    expect(turns).to_have_count(3)
    expect(turns.nth(0).locator(".text")).to_have_text("echo: hello console")
    expect(turns.nth(2).locator(".prompt")).to_contain_text("until [ -f go ]")
    expect(turns.nth(2).locator("details.tool.running")).to_have_count(1)
    r = http.post(f"/api/sessions/{sid}/exec", json={"command": "touch go"})
    assert r.status_code == 200, r.text
    expect(turns.nth(2).locator(".tool-status")).to_have_text("done")
    expect(turns.nth(2).locator(".tool-output")).to_contain_text("released")
    expect(turns.nth(2).locator(".text")).to_contain_text("tool said: released")
    expect(page.locator(".turn.running")).to_have_count(0)
    shown = page.locator(".turn .text").all_inner_texts()
    assert len(shown) == 3, f"an event was shown twice or lost: {shown}"

    # The timeline lists the turn's events.
    page.get_by_role("tab", name="Timeline").click()
    expect(page.locator("table").get_by_text("tool_start").first).to_be_visible()

    # The file the agent wrote (the files routes come with issue 11).
    page.get_by_role("tab", name="Files").click()
    listing = http.get(f"/api/sessions/{sid}/files")
    if listing.status_code == 404 and listing.json()["error"] == "Not Found":
        expect(page.get_by_text("Not available on this server yet.")).to_be_visible()
    else:
        with page.expect_download() as download:
            page.get_by_role("button", name="Download out.txt").click()
        assert Path(download.value.path()).read_text() == "hi\n"

    # Stop and resume, then chat again.
    page.get_by_role("tab", name="Chat").click()
    page.get_by_role("button", name="Stop session").click()
    expect(badge).to_have_text("stopped")
    assert http.get(f"/api/sessions/{sid}").json()["session"]["status"] == "stopped"
    page.get_by_role("button", name="Resume session").click()
    expect(badge).to_have_text("active")
    composer.fill("back again")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(turns.nth(3).locator(".text")).to_have_text("echo: back again")


def test_sessions_list_filters_and_pages(
    page: Page, http: httpx.Client, agent: str
) -> None:
    ids = [new_session(http, agent) for _ in range(3)]
    assert http.post(f"/api/sessions/{ids[0]}/pause").status_code == 200
    sign_in(page, API_KEY)
    page.goto("/dashboard/#/sessions?status=paused")
    rows = page.locator("main table tbody tr")
    expect(rows.first).to_be_visible()
    # Other tests' idle sessions may be paused meanwhile: check the filter, not a snapshot.
    shown = set(rows.locator("code").all_inner_texts())
    assert ids[0][:8] in shown and not {i[:8] for i in ids[1:]} & shown
    assert set(rows.locator(".badge").all_inner_texts()) == {"paused"}
    page.get_by_label("Status").select_option("active")
    expect(page).to_have_url(re.compile(r"status=active"))
    expect(rows.first.locator(".badge")).to_have_text("active")
    statuses = set(rows.locator(".badge").all_inner_texts())
    assert statuses == {"active"}

    total = len(http.get("/api/sessions?limit=1000").json()["sessions"])
    page.goto("/dashboard/#/sessions")
    expect(rows.first).to_be_visible()
    assert rows.count() == min(total, 20)
    older = page.get_by_role("button", name="Older →")
    if total > 20:
        older.click()
        expect(page).to_have_url(re.compile(r"offset=20"))
    else:
        expect(older).to_be_disabled()


def test_routes_the_server_lacks_say_so(page: Page) -> None:
    sign_in(page, API_KEY)
    for route, heading in (("#/queue", "Queue"), ("#/keys", "API keys"),
                           ("#/credentials", "Credentials")):
        page.goto(f"/dashboard/{route}")
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        notes = page.locator(".unavailable, .section-body table, .empty")
        expect(notes.first).to_be_visible()
        assert page.locator(".section-body .error").count() == 0


def test_screenshots_and_narrow_window(page: Page, http: httpx.Client, agent: str) -> None:
    sid = new_session(http, agent)
    send(http, sid, "Summarise the **notes** in this folder", includePartialMessages=True)
    send(http, sid, 'TOOL Bash {"command": "ls -la && cat notes.txt"}',
         includePartialMessages=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sign_in(page, API_KEY)
    expect(page.locator("dl.stats").first).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)
    page.goto("/dashboard/#/agents")
    expect(page.locator("main table")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "agents.png"), full_page=True)
    page.goto("/dashboard/#/sessions")
    expect(page.locator("main table")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "sessions.png"), full_page=True)
    page.goto(f"/dashboard/#/sessions/{sid}")
    expect(page.locator(".turn .text")).to_have_count(2)
    page.locator("details.tool summary").first.click()
    page.screenshot(path=str(SCREENSHOTS / "session.png"), full_page=True)

    # A narrow window: the menu folds behind a labelled button, tables stack.
    page.set_viewport_size({"width": 390, "height": 800})
    menu = page.get_by_role("button", name="Show or hide the menu")
    expect(menu).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    page.screenshot(path=str(SCREENSHOTS / "session-narrow.png"), full_page=False)
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    page.get_by_role("link", name="Sessions").click()
    expect(page.locator("#nav")).to_be_hidden()
    expect(page.locator("main table")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways in a narrow window ({width}px)"
    page.screenshot(path=str(SCREENSHOTS / "sessions-narrow.png"), full_page=False)
