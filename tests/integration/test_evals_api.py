"""Evals over HTTP on SQLite and Postgres: cases, runs in fresh sessions, scores, compare."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.integration.conftest import Target

pytestmark = pytest.mark.ray


def _run_done(target: Target, run_id: str) -> dict[str, Any] | None:
    run = target.http.get(f"/api/agents/{target.agent}/eval-runs/{run_id}").json()["run"]
    return run if run["status"] in ("completed", "failed") else None


def test_eval_cases_runs_scores_and_compare(target: Target) -> None:
    http, base = target.http, f"/api/agents/{target.agent}"
    cat = f"cat-{uuid.uuid4().hex[:8]}"
    good = http.post(f"{base}/eval-cases", json={
        "question": "say hello", "expectedTopics": ["ECHO", "hello"], "category": cat,
        "tags": ["smoke"]})
    assert good.status_code == 201, good.text
    imported = http.post(f"{base}/eval-cases/import", json={"cases": [
        {"question": "anything", "expectedNotTopics": ["echo"], "category": cat},
        {"question": "inactive", "category": cat, "isActive": False},
        {"question": "to delete", "category": cat},
    ]})
    assert imported.json() == {"imported": 3}
    cases = http.get(f"{base}/eval-cases", params={"category": cat}).json()["cases"]
    assert [c["question"] for c in cases] == ["say hello", "anything", "inactive", "to delete"]
    active = http.get(f"{base}/eval-cases", params={"category": cat, "isActive": "false"})
    assert [c["question"] for c in active.json()["cases"]] == ["inactive"]
    doomed = cases[3]["id"]
    assert http.delete(f"{base}/eval-cases/{doomed}").status_code == 204
    assert http.get(f"{base}/eval-cases/{doomed}").status_code == 404
    assert http.delete(f"{base}/eval-cases/{doomed}").status_code == 404
    patched = http.patch(f"{base}/eval-cases/{cases[1]['id']}", json={"tags": ["safety"]})
    assert patched.json()["case"]["tags"] == ["safety"]
    assert patched.json()["case"]["expectedNotTopics"] == ["echo"]
    exported = http.get(f"{base}/eval-cases/export").json()["cases"]
    assert {c["question"] for c in exported} >= {"say hello", "anything", "inactive"}

    runs = []
    for _ in range(2):
        r = http.post(f"{base}/eval-runs", json={"categories": [cat]})
        assert r.status_code == 201, r.text
        assert r.json()["run"]["totalCases"] == 2  # the two active cases of the category
        runs.append(r.json()["run"]["id"])
    done = [wait_for(lambda i=i: _run_done(target, i), timeout_s=90, what="eval run")
            for i in runs]
    assert all(d["status"] == "completed" for d in done), done
    assert done[0]["passRate"] == 0.5 and done[0]["passedCases"] == 1
    assert done[0]["avgTopicScore"] == 1.0 and done[0]["avgSafetyScore"] == 0.5
    results = http.get(f"{base}/eval-runs/{runs[0]}/results").json()["results"]
    by_q = {r["question"]: r for r in results}
    assert by_q["say hello"]["answer"] == "echo: say hello"
    assert by_q["say hello"]["topicScore"] == 1.0 and by_q["say hello"]["passed"] is True
    assert by_q["anything"]["safetyScore"] == 0.0 and by_q["anything"]["passed"] is False
    assert by_q["anything"]["sessionId"] != by_q["say hello"]["sessionId"]  # fresh sessions
    session = http.get(f"/api/sessions/{by_q['anything']['sessionId']}").json()["session"]
    assert session["status"] == "ended"

    listed = http.get(f"{base}/eval-runs").json()["runs"]
    assert {r["id"] for r in listed} >= set(runs)
    cmp = http.get(f"{base}/eval-runs/compare", params={"runA": runs[0], "runB": runs[1]})
    comparison = cmp.json()["comparison"]
    assert comparison["runA"]["id"] == runs[0] and len(comparison["results"]) == 2
    assert all(row["runA"]["passed"] == row["runB"]["passed"] for row in comparison["results"])

    one = by_q["say hello"]["id"]
    scored = http.post(f"{base}/eval-runs/{runs[0]}/score",
                       json={"resultId": one, "humanScore": 4, "humanNotes": "fine"})
    assert scored.json()["scored"] == 1
    assert {r["id"]: r["humanScore"] for r in scored.json()["results"]}[one] == 4
    all_scored = http.post(f"{base}/eval-runs/{runs[1]}/score", json={"humanScore": 2})
    assert all_scored.json()["scored"] == 2
    patched_result = http.patch(f"{base}/eval-results/{one}", json={"humanScore": 5,
                                                                    "humanNotes": "great"})
    assert patched_result.json()["result"]["humanScore"] == 5
    assert _run_done(target, runs[0])["avgHumanScore"] == 5  # type: ignore[index]

    assert http.get("/api/analytics").json()["evals"]["totalRuns"] >= 2
    # Refusals: bad ids, bad bodies, unknown things.
    assert http.get(f"{base}/eval-runs/{uuid.uuid4()}").status_code == 404
    assert http.get(f"{base}/eval-runs/not-a-uuid").status_code == 400
    assert http.post(f"{base}/eval-cases", json={"question": ""}).status_code == 400
    assert http.post(f"{base}/eval-runs/{runs[0]}/score",
                     json={"humanScore": 6}).status_code == 400
    assert http.post(f"{base}/eval-runs", json={"versionNumber": 999}).status_code == 400
    assert http.post("/api/agents/no-such-agent/eval-runs", json={}).status_code == 404
    assert http.get(f"{base}/eval-runs/compare",
                    params={"runA": runs[0], "runB": str(uuid.uuid4())}).status_code == 404


def test_eval_run_of_a_named_version_runs_on_that_version(target: Target, fake_model) -> None:  # type: ignore[no-untyped-def]
    http, base = target.http, f"/api/agents/{target.agent}"
    tag = f"ver-{uuid.uuid4().hex[:8]}"
    before = [v for v in http.get(f"{base}/versions").json()["versions"] if v["isActive"]]
    made = [http.post(f"{base}/versions", json={"systemPrompt": f"PROMPT-{n} {tag}"}).json()
            ["version"]["versionNumber"] for n in ("ONE", "TWO")]
    try:
        assert http.post(f"{base}/versions/{made[1]}/activate").status_code == 200
        http.post(f"{base}/eval-cases", json={"question": f"which prompt {tag}", "tags": [tag]})
        named = http.post(f"{base}/eval-runs", json={"versionNumber": made[0], "tags": [tag]})
        default = http.post(f"{base}/eval-runs", json={"tags": [tag]})
        assert named.status_code == default.status_code == 201, (named.text, default.text)
        runs = [named.json()["run"], default.json()["run"]]
        # Not given: the version active when the run was made.
        assert [r["versionNumber"] for r in runs] == made
        for run, want in zip(runs, (f"PROMPT-ONE {tag}", f"PROMPT-TWO {tag}"), strict=True):
            done = wait_for(lambda r=run: _run_done(target, r["id"]), timeout_s=90,
                            what="eval run")
            assert done["status"] == "completed", done
            [result] = http.get(f"{base}/eval-runs/{run['id']}/results").json()["results"]
            session = http.get(f"/api/sessions/{result['sessionId']}").json()["session"]
            assert session["config"]["systemPrompt"] == want
            asked = [str(b.get("system")) for b in fake_model.message_requests
                     if f"which prompt {tag}" in str(b["messages"])]
            assert any(want in s for s in asked), asked  # the model saw that version's prompt
    finally:
        for number in made:
            http.delete(f"{base}/versions/{number}")
        for v in before:  # leave the shared agent's active version as it was
            http.post(f"{base}/versions/{v['versionNumber']}/activate")
