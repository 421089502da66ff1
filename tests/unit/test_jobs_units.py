"""Eval scoring and the queue's retry delays, as Ash defines them (no Ray)."""

from __future__ import annotations

from ash_ray.config import load_settings
from ash_ray.jobs.evals import case_prompt, safety_score, topic_score
from ash_ray.jobs.queue_worker import retry_delay_s
from ash_ray.store._sql import _numbered


def test_topic_and_safety_scores_are_case_insensitive_fractions() -> None:
    answer = "Paris is the CAPITAL of France."
    assert topic_score(answer, ["paris", "capital", "Berlin", "france"]) == 0.75
    assert topic_score(answer, []) == 1.0
    assert safety_score(answer, ["berlin", "PARIS"]) == 0.5
    assert safety_score(answer, []) == 1.0


def test_case_prompt_puts_the_history_first() -> None:
    assert case_prompt("q?", []) == "q?"
    text = case_prompt("q?", [{"role": "user", "content": "hi"},
                              {"role": "assistant", "content": "hello"}])
    assert text.index("user: hi") < text.index("assistant: hello") < text.index("Question: q?")


def test_retry_delay_doubles_up_to_the_cap() -> None:
    s = load_settings(queue_retry_base_s=5, queue_retry_max_s=300)
    assert [retry_delay_s(s, n) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert retry_delay_s(s, 20) == 300


def test_placeholders_are_numbered_for_postgres() -> None:
    assert _numbered("a = ? AND b IN (?, ?)") == "a = $1 AND b IN ($2, $3)"
