"""The console's pages are served from the package, public, and hold no key."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from ash_ray.api import errors
from ash_ray.console import console_router


def client() -> TestClient:
    app = FastAPI()
    errors.install(app)
    app.include_router(console_router())
    return TestClient(app, raise_server_exceptions=False)


def test_index_and_modules_are_served_with_a_strict_policy() -> None:
    c = client()
    r = c.get("/dashboard", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "dashboard/"
    page = c.get("/dashboard/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="app.js">' in page.text
    modules = ("app.js", "api.js", "ui.js", "pages.js", "session.js", "transcript.js", "admin.js",
               "usage.js")
    for name in modules:
        r = c.get(f"/dashboard/{name}")
        assert r.status_code == 200, name
        assert r.headers["content-type"].startswith("text/javascript")
        assert r.headers["x-content-type-options"] == "nosniff"
    assert c.get("/dashboard/style.css").headers["content-type"].startswith("text/css")


def test_only_console_files_are_served() -> None:
    c = client()
    for name in ("routes.py", "..%2Froutes.py", ".hidden.js", "nope.js", "%2Fetc%2Fpasswd"):
        r = c.get(f"/dashboard/{name}")
        assert r.status_code == 404, name
        assert "error" in r.json()


def test_no_page_or_script_carries_a_key(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ASH_API_KEY", "sekrit-console-key")
    c = client()
    for name in ("", "app.js", "api.js", "session.js", "pages.js"):
        assert "sekrit-console-key" not in c.get(f"/dashboard/{name}").text
