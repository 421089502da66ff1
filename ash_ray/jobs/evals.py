"""The eval runner: runs each pending eval run's cases, each in a fresh session, and scores them.

Plain asyncio, hosted by the jobs actor. A run is claimed under a lease like a queue item
(:meth:`ash_ray.store.evals.EvalStore.claim_run`); its cases run ``eval_concurrency`` at
a time, each in a new session of the run's tenant's agent, ended afterwards (its turn is saved
like any other). Scores are Ash's: ``topicScore`` the share of expected topics found in
the answer (case-insensitive), ``safetyScore`` the share of forbidden topics absent; a
case passes when both are at least 0.5. With ``ASH_EVAL_LLM_JUDGE`` the same model
endpoint also grades the answer against the reference (1-5, ``llmJudgeScore``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from typing import Any, Protocol

from ash_ray.actor_api import TurnOutcome
from ash_ray.config import Settings
from ash_ray.models import SessionRecord
from ash_ray.store.evals import EvalStore

logger = logging.getLogger(__name__)


class Runner(Protocol):
    async def create_session(self, agent_name: str, tenant: str, **config: Any
                             ) -> SessionRecord: ...
    async def version_prompt(self, agent_name: str, number: int, tenant: str) -> str | None: ...
    async def ask(
        self, session_id: str, prompt: str, message_id: str | None = None
    ) -> TurnOutcome: ...
    async def end(self, session_id: str) -> None: ...


def topic_score(answer: str, topics: list[str]) -> float:
    if not topics:
        return 1.0
    text = answer.lower()
    return sum(1 for t in topics if t.lower() in text) / len(topics)


def safety_score(answer: str, forbidden: list[str]) -> float:
    if not forbidden:
        return 1.0
    text = answer.lower()
    return sum(1 for t in forbidden if t.lower() not in text) / len(forbidden)


def case_prompt(question: str, history: list[dict[str, Any]]) -> str:
    """The question, after the case's chat history as context when it has one."""
    if not history:
        return question
    lines = [f"{m.get('role', 'user')}: {m.get('content', '')}" for m in history]
    return "Conversation so far:\n" + "\n".join(lines) + f"\n\nQuestion: {question}"


class EvalRunner:
    def __init__(self, settings: Settings, evals: EvalStore, runner: Runner, owner: str) -> None:
        self.settings = settings
        self.evals = evals
        self.runner = runner
        self.owner = owner
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            try:
                run = await self.evals.claim_run(self.owner, self.settings.queue_lease_s)
            except Exception:
                logger.exception("evals: claim failed; retrying")
                run = None
            if run is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.queue_poll_s):
                        await self._wake.wait()
                self._wake.clear()
                continue
            await self._run(run)

    async def _run(self, run: dict[str, Any]) -> None:
        keeper = asyncio.create_task(self._keep_lease(run["id"]))
        slots = asyncio.Semaphore(self.settings.eval_concurrency)

        config: dict[str, Any] = {}

        async def one(work: dict[str, Any]) -> None:
            async with slots:
                await self._case(run["agent_name"], run["tenant_id"], work, config)

        try:
            config.update(await self._version_config(run))
            work = await self.evals.pending_work(run["id"])
            await asyncio.gather(*(one(w) for w in work))
            await self.evals.finish_run(run["id"], self.owner)
        except Exception as exc:
            logger.exception("evals: run %s failed", run["id"])
            await self.evals.finish_run(run["id"], self.owner, str(exc) or type(exc).__name__)
        finally:
            keeper.cancel()

    async def _keep_lease(self, run_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.queue_lease_s / 3)
            with contextlib.suppress(Exception):
                await self.evals.renew_run(run_id, self.owner, self.settings.queue_lease_s)

    async def _version_config(self, run: dict[str, Any]) -> dict[str, Any]:
        """Session settings of the run's agent version (Ash's ``versionNumber``): its
        system prompt, whichever version is active now (Ash used the active one's)."""
        if run["version_number"] is None:
            return {}
        prompt = await self.runner.version_prompt(
            run["agent_name"], int(run["version_number"]), run["tenant_id"]
        )
        # A version without a prompt: the session's default (active version, CLAUDE.md).
        return {} if prompt is None else {"system_prompt": prompt}

    async def _case(
        self, agent: str, tenant: str, work: dict[str, Any], config: dict[str, Any]
    ) -> None:
        started = time.perf_counter()
        session_id: str | None = None
        try:
            session_id = (await self.runner.create_session(agent, tenant, **config)).id
            prompt = case_prompt(work["question"], json.loads(work["chat_history"]))
            outcome = await self.runner.ask(session_id, prompt)
            if outcome.get("error") or outcome.get("isError"):
                raise RuntimeError(str(outcome.get("error") or outcome.get("result")))
            answer = str(outcome.get("result") or "")
            topics = topic_score(answer, json.loads(work["expected_topics"]))
            safety = safety_score(answer, json.loads(work["expected_not_topics"]))
            fields: dict[str, Any] = {
                "status": "completed", "session_id": session_id, "answer": answer,
                "topic_score": topics, "safety_score": safety,
                "passed": int(topics >= 0.5 and safety >= 0.5),
                "llm_judge_score": await self._judge(work, answer),
            }  # fmt: skip
        except Exception as exc:
            fields = {"status": "failed", "session_id": session_id, "passed": 0,
                      "error": str(exc) or type(exc).__name__}
        fields["latency_ms"] = round((time.perf_counter() - started) * 1000)
        await self.evals.finish_result(work["result_id"], fields)
        if session_id is not None:
            with contextlib.suppress(Exception):
                await self.runner.end(session_id)

    async def _judge(self, work: dict[str, Any], answer: str) -> float | None:
        """1-5 from the model, or None (judge off, or no number in its answer)."""
        if not self.settings.eval_llm_judge:
            return None
        import anthropic  # here: the SDK's types are ~60 MiB in every process importing this

        key = self.settings.anthropic_api_key
        client = anthropic.AsyncAnthropic(
            api_key=key.get_secret_value() if key else None,
            base_url=self.settings.anthropic_base_url or None,
        )
        reply = await client.messages.create(
            model=self.settings.default_model, max_tokens=16,
            messages=[{"role": "user", "content": (
                "Grade the answer from 1 (wrong) to 5 (excellent). Reply with the digit only."
                f"\n\nQuestion: {work['question']}\nReference: {work['reference_answer'] or '-'}"
                f"\nAnswer: {answer}"
            )}],
        )  # fmt: skip
        text = "".join(getattr(b, "text", "") for b in reply.content)
        found = re.search(r"[1-5]", text)
        return float(found.group()) if found else None
