"""A turn's options: the message's, else the session's, else the defaults."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ash_ray.agent import TurnOptions
from ash_ray.config import Settings
from ash_ray.models import SessionConfig

_TURN_FIELDS = {f.name for f in dataclasses.fields(TurnOptions)}


def turn_options(options: dict[str, Any], config: SessionConfig, settings: Settings) -> TurnOptions:
    """The loop's options of one turn: the message's, else the session's, else defaults.

    Every other option of the message or the session whose name is a field of
    :class:`TurnOptions` (``thinking``, ``effort``, ``betas``, ...) is passed on as it is,
    so a field the loop learns reaches it without a change here.
    """
    known: dict[str, Any] = {
        "model": options.get("model") or config.model,  # None: the agent's, then the default
        "max_turns": options.get("max_turns") or settings.max_turns,
        "max_budget_usd": options.get("max_budget_usd"),
        "include_partial": bool(options.get("include_partial_messages")),
        "system_prompt": config.system_prompt,
        "allowed_tools": config.allowed_tools,
        "disallowed_tools": config.disallowed_tools,
        "output_format": options.get("output_format"),
    }
    session = config.model_dump(exclude_none=True)
    extra = {
        name: value
        for name in _TURN_FIELDS - known.keys()
        if (value := _first_set(options.get(name), session.get(name))) is not None
    }
    return TurnOptions(**known, **extra)


def plain_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options as JSON keeps them (what the store holds for a queued message)."""
    result: dict[str, Any] = json.loads(json.dumps(options, default=str))
    return result


def _first_set(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)
