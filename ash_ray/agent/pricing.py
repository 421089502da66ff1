"""Estimated cost of model usage, for ``total_cost_usd`` and ``max_budget_usd``.

List prices in USD per million tokens. Only an estimate: gateways, discounts and
batch pricing differ. An unknown model is priced as Sonnet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ash_ray.models import Usage


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float


SONNET = Price(3.0, 15.0, 3.75, 0.30)
# First match wins, so older and more specific names come first. Opus 4.5 and later
# cost a third of Opus 4/4.1; Haiku 4.5 and later cost more than Haiku 3.x.
PRICES: tuple[tuple[re.Pattern[str], Price], ...] = tuple(
    (re.compile(pattern), price)
    for pattern, price in (
        (r"3-opus|opus-4-[01](?:\D|$)|opus-4-20\d{6}|opus-4$", Price(15.0, 75.0, 18.75, 1.50)),
        (r"opus", Price(5.0, 25.0, 6.25, 0.50)),
        (r"3-5-haiku|haiku-3-5", Price(0.80, 4.0, 1.0, 0.08)),
        (r"3-haiku|haiku-3", Price(0.25, 1.25, 0.30, 0.03)),
        (r"haiku", Price(1.0, 5.0, 1.25, 0.10)),
        (r"sonnet", SONNET),
    )
)


def price_of(model: str) -> Price:
    """The price row for ``model`` (Sonnet's when unknown)."""
    name = model.lower()
    return next((price for pattern, price in PRICES if pattern.search(name)), SONNET)


def cost_usd(model: str, usage: Usage) -> float:
    """Estimated cost of ``usage`` on ``model``."""
    price = price_of(model)
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_creation_input_tokens * price.cache_write
        + usage.cache_read_input_tokens * price.cache_read
    )
    return total / 1_000_000
