"""Eval cases, runs and results in the Store (Ash's ``routes/evals.ts`` data).

A run is created with one ``pending`` result per matching active case; the eval runner
claims a run under a lease (as the queue does, see :mod:`ash_ray.store.queue`), fills in
its results and marks it ``completed``. A run's figures (pass rate, average scores) are
computed from its results when read, so they can never disagree with them.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from ash_ray.models import iso, new_id, utcnow
from ash_ray.store._sql import Db

CASE_FIELDS = {  # wire name -> (column, is JSON)
    "question": ("question", False), "expectedTopics": ("expected_topics", True),
    "expectedNotTopics": ("expected_not_topics", True),
    "referenceAnswer": ("reference_answer", False), "category": ("category", False),
    "tags": ("tags", True), "chatHistory": ("chat_history", True),
    "isActive": ("is_active", False),
}  # fmt: skip
_CASE_DEFAULTS: dict[str, Any] = {
    "expectedTopics": [], "expectedNotTopics": [], "referenceAnswer": None, "category": None,
    "tags": [], "chatHistory": [], "isActive": True,
}  # fmt: skip


def _case_value(wire: str, value: Any) -> Any:
    col, is_json = CASE_FIELDS[wire]
    if is_json:
        return json.dumps(value)
    if col == "is_active":
        return int(bool(value))
    return value


class EvalStore:
    """Everything the eval routes and the eval runner read and write; wire-shaped dicts."""

    def __init__(self, db: Db) -> None:
        self.db = db

    def _ts(self, value: Any) -> str | None:
        ts = self.db.ts_in(value)
        return iso(ts) if ts else None

    def _case(self, row: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": row["id"], "agentName": row["agent_name"]}
        for wire, (col, is_json) in CASE_FIELDS.items():
            out[wire] = json.loads(row[col]) if is_json else row[col]
        out["isActive"] = bool(row["is_active"])
        out["createdAt"], out["updatedAt"] = self._ts(row["created_at"]), self._ts(
            row["updated_at"]
        )
        return out

    # ------------------------------------------------------------ cases

    async def create_case(self, agent: str, body: dict[str, Any], tenant: str = "default"
                          ) -> dict[str, Any]:
        values = {**_CASE_DEFAULTS, **body}
        now = self.db.ts(utcnow())
        cols = [col for col, _ in CASE_FIELDS.values()]
        row = await self.db.one(
            "eval_case_create",
            f"INSERT INTO eval_cases (id, tenant_id, agent_name, {', '.join(cols)}, created_at, "
            f"updated_at) VALUES (?, ?, ?, {', '.join('?' for _ in cols)}, ?, ?) RETURNING *",
            (new_id(), tenant, agent, *(_case_value(w, values[w]) for w in CASE_FIELDS), now,
             now),
        )
        assert row is not None
        return self._case(row)

    async def import_cases(self, agent: str, cases: list[dict[str, Any]],
                           tenant: str = "default") -> int:
        for body in cases:
            await self.create_case(agent, body, tenant)
        return len(cases)

    async def get_case(self, agent: str, case_id: str, tenant: str = "default"
                       ) -> dict[str, Any] | None:
        row = await self.db.one(
            "eval_case_get",
            "SELECT * FROM eval_cases WHERE id = ? AND agent_name = ? AND tenant_id = ?",
            (case_id, agent, tenant),
        )
        return self._case(row) if row else None

    async def list_cases(self, agent: str, category: str | None = None,
                         is_active: bool | None = None, tenant: str = "default"
                         ) -> list[dict[str, Any]]:
        where = "agent_name = ? AND tenant_id = ?"
        args: list[Any] = [agent, tenant]
        if category is not None:
            where += " AND category = ?"
            args.append(category)
        if is_active is not None:
            where += " AND is_active = ?"
            args.append(int(is_active))
        found = await self.db.fetch(
            "eval_case_list", f"SELECT * FROM eval_cases WHERE {where} ORDER BY created_at, id",
            args,
        )
        return [self._case(r) for r in found]

    async def update_case(self, agent: str, case_id: str, patch: dict[str, Any],
                          tenant: str = "default") -> dict[str, Any] | None:
        sets = [f"{CASE_FIELDS[w][0]} = ?" for w in patch]
        args = [_case_value(w, v) for w, v in patch.items()]
        row = await self.db.one(
            "eval_case_update",
            f"UPDATE eval_cases SET {', '.join([*sets, 'updated_at = ?'])} "
            "WHERE id = ? AND agent_name = ? AND tenant_id = ? RETURNING *",
            (*args, self.db.ts(utcnow()), case_id, agent, tenant),
        )
        return self._case(row) if row else None

    async def delete_case(self, agent: str, case_id: str, tenant: str = "default") -> bool:
        row = await self.db.one(
            "eval_case_delete",
            "DELETE FROM eval_cases WHERE id = ? AND agent_name = ? AND tenant_id = ? "
            "RETURNING id",
            (case_id, agent, tenant),
        )
        return row is not None

    # ------------------------------------------------------------ runs

    async def create_run(self, agent: str, version_number: int | None,
                         categories: list[str] | None, tags: list[str] | None,
                         tenant: str = "default") -> dict[str, Any]:
        """A pending run with one pending result per matching active case."""
        cases = [
            c for c in await self.list_cases(agent, is_active=True, tenant=tenant)
            if (not categories or c["category"] in categories)
            and (not tags or set(tags) & set(c["tags"]))
        ]
        run_id, now = new_id(), self.db.ts(utcnow())
        filters = json.dumps({"categories": categories, "tags": tags})
        await self.db.fetch(
            "eval_run_create",
            "INSERT INTO eval_runs (id, tenant_id, agent_name, version_number, status, filters, "
            "created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?) RETURNING id",
            (run_id, tenant, agent, version_number, filters, now),
        )
        for case in cases:
            await self.db.fetch(
                "eval_result_create",
                "INSERT INTO eval_results (id, run_id, case_id, status, created_at) "
                "VALUES (?, ?, ?, 'pending', ?) RETURNING id",
                (new_id(), run_id, case["id"], now),
            )
        run = await self.get_run(agent, run_id, tenant)
        assert run is not None
        return run

    async def _run(self, row: dict[str, Any]) -> dict[str, Any]:
        results = await self.results(row["id"])
        done = [r for r in results if r["status"] in ("completed", "failed")]
        passed = sum(1 for r in results if r["passed"])

        def avg(key: str) -> float | None:
            vals = [r[key] for r in done if r[key] is not None]
            return sum(vals) / len(vals) if vals else None

        return {
            "id": row["id"], "agentName": row["agent_name"],
            "versionNumber": row["version_number"], "status": row["status"],
            "filters": json.loads(row["filters"]), "error": row["error"],
            "totalCases": len(results), "completedCases": len(done), "passedCases": passed,
            "passRate": passed / len(results) if results else None,
            "avgTopicScore": avg("topicScore"), "avgSafetyScore": avg("safetyScore"),
            "avgLlmJudgeScore": avg("llmJudgeScore"), "avgHumanScore": avg("humanScore"),
            "createdAt": self._ts(row["created_at"]), "startedAt": self._ts(row["started_at"]),
            "completedAt": self._ts(row["completed_at"]),
        }  # fmt: skip

    async def get_run(self, agent: str, run_id: str, tenant: str = "default"
                      ) -> dict[str, Any] | None:
        row = await self.db.one(
            "eval_run_get",
            "SELECT * FROM eval_runs WHERE id = ? AND agent_name = ? AND tenant_id = ?",
            (run_id, agent, tenant),
        )
        return await self._run(row) if row else None

    async def list_runs(self, agent: str, tenant: str = "default") -> list[dict[str, Any]]:
        found = await self.db.fetch(
            "eval_run_list",
            "SELECT * FROM eval_runs WHERE agent_name = ? AND tenant_id = ? "
            "ORDER BY created_at DESC, id DESC",
            (agent, tenant),
        )
        return [await self._run(r) for r in found]

    def _result(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": row["id"], "runId": row["run_id"], "caseId": row["case_id"],
            "question": row.get("question"), "status": row["status"],
            "sessionId": row["session_id"], "answer": row["answer"],
            "topicScore": row["topic_score"], "safetyScore": row["safety_score"],
            "llmJudgeScore": row["llm_judge_score"],
            "passed": None if row["passed"] is None else bool(row["passed"]),
            "humanScore": row["human_score"], "humanNotes": row["human_notes"],
            "error": row["error"], "latencyMs": row["latency_ms"],
            "createdAt": self._ts(row["created_at"]), "completedAt": self._ts(row["completed_at"]),
        }  # fmt: skip

    async def results(self, run_id: str) -> list[dict[str, Any]]:
        found = await self.db.fetch(
            "eval_results",
            "SELECT r.*, c.question AS question FROM eval_results r "
            "LEFT JOIN eval_cases c ON c.id = r.case_id WHERE r.run_id = ? "
            "ORDER BY r.created_at, c.created_at, r.id",
            (run_id,),
        )
        return [self._result(r) for r in found]

    async def run_results(self, agent: str, run_id: str, tenant: str = "default"
                          ) -> list[dict[str, Any]] | None:
        if await self.get_run(agent, run_id, tenant) is None:
            return None
        return await self.results(run_id)

    async def compare(self, agent: str, run_a: str, run_b: str, tenant: str = "default"
                      ) -> dict[str, Any] | None:
        a, b = await self.get_run(agent, run_a, tenant), await self.get_run(agent, run_b, tenant)
        if a is None or b is None:
            return None
        ra = {r["caseId"]: r for r in await self.results(run_a)}
        rb = {r["caseId"]: r for r in await self.results(run_b)}
        rows = [
            {"caseId": cid, "question": (ra.get(cid) or rb[cid])["question"],
             "runA": ra.get(cid), "runB": rb.get(cid)}
            for cid in dict.fromkeys([*ra, *rb])
        ]
        return {"runA": a, "runB": b, "results": rows}

    async def score(self, agent: str, run_id: str, result_id: str | None,
                    human_score: int | None, human_notes: str | None, tenant: str = "default"
                    ) -> tuple[int, list[dict[str, Any]]] | None:
        """Human scores on one result of the run, or on all of them."""
        if await self.get_run(agent, run_id, tenant) is None:
            return None
        where, args = "run_id = ?", [run_id]
        if result_id is not None:
            where += " AND id = ?"
            args.append(result_id)
        found = await self.db.fetch(
            "eval_score",
            "UPDATE eval_results SET human_score = COALESCE(?, human_score), "
            f"human_notes = COALESCE(?, human_notes) WHERE {where} RETURNING id",
            (human_score, human_notes, *args),
        )
        return len(found), await self.results(run_id)

    async def patch_result(self, agent: str, result_id: str, human_score: int | None,
                           human_notes: str | None, tenant: str = "default"
                           ) -> dict[str, Any] | None:
        row = await self.db.one(
            "eval_result_patch",
            "UPDATE eval_results SET human_score = ?, human_notes = ? WHERE id = ? AND run_id IN "
            "(SELECT id FROM eval_runs WHERE agent_name = ? AND tenant_id = ?) RETURNING run_id",
            (human_score, human_notes, result_id, agent, tenant),
        )
        if row is None:
            return None
        return next(r for r in await self.results(row["run_id"]) if r["id"] == result_id)

    # ------------------------------------------------------------ the runner's side

    async def any_unfinished_run(self) -> bool:
        """Any run of any tenant still pending or running (work for an eval runner)."""
        found = await self.db.one(
            "eval_any_unfinished",
            "SELECT id FROM eval_runs WHERE status IN ('pending', 'running') LIMIT 1",
        )
        return found is not None

    async def claim_run(self, owner: str, lease_s: float) -> dict[str, Any] | None:
        now = utcnow()
        runnable = ("(status = 'pending' OR (status = 'running' AND "
                    "(lease_expires_at < ? OR lease_owner = ?)))")
        lock = " FOR UPDATE SKIP LOCKED" if self.db.kind == "postgres" else ""
        ts_now = self.db.ts(now)
        return await self.db.one(
            "eval_run_claim",
            "UPDATE eval_runs SET status = 'running', lease_owner = ?, lease_expires_at = ?, "
            "started_at = COALESCE(started_at, ?) WHERE id = (SELECT id FROM eval_runs WHERE "
            f"{runnable} ORDER BY created_at, id LIMIT 1{lock}) AND {runnable} RETURNING *",
            (owner, self.db.ts(now + timedelta(seconds=lease_s)), ts_now, ts_now, owner,
             ts_now, owner),
        )

    async def renew_run(self, run_id: str, owner: str, lease_s: float) -> bool:
        row = await self.db.one(
            "eval_run_renew",
            "UPDATE eval_runs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? "
            "AND status = 'running' RETURNING id",
            (self.db.ts(utcnow() + timedelta(seconds=lease_s)), run_id, owner),
        )
        return row is not None

    async def pending_work(self, run_id: str) -> list[dict[str, Any]]:
        """The run's unfinished results with their cases."""
        return await self.db.fetch(
            "eval_pending",
            "SELECT r.id AS result_id, c.question, c.expected_topics, c.expected_not_topics, "
            "c.reference_answer, c.chat_history FROM eval_results r "
            "JOIN eval_cases c ON c.id = r.case_id WHERE r.run_id = ? AND r.status != "
            "'completed' AND r.status != 'failed' ORDER BY r.created_at, c.created_at, r.id",
            (run_id,),
        )

    async def finish_result(self, result_id: str, fields: dict[str, Any]) -> None:
        cols = list(fields)
        await self.db.fetch(
            "eval_result_finish",
            f"UPDATE eval_results SET {', '.join(f'{c} = ?' for c in cols)}, completed_at = ? "
            "WHERE id = ? RETURNING id",
            (*fields.values(), self.db.ts(utcnow()), result_id),
        )

    async def finish_run(self, run_id: str, owner: str, error: str | None = None) -> bool:
        row = await self.db.one(
            "eval_run_finish",
            "UPDATE eval_runs SET status = ?, error = ?, completed_at = ?, lease_owner = NULL, "
            "lease_expires_at = NULL WHERE id = ? AND lease_owner = ? RETURNING id",
            ("failed" if error else "completed", error, self.db.ts(utcnow()), run_id, owner),
        )
        return row is not None
