"""Nothing goes into the store that it cannot read back; one bad row never breaks a read.

Write side: a session or usage row is encoded and then decoded again by the very
functions that read it (:mod:`ash_ray.store._rows`), so a record built without validation
(``model_copy(update=...)`` skips it) cannot poison the table. ``None`` where a field has
a default (``extra_env=None`` from a PATCH) becomes that default, on write and on read.
A row that still does not round-trip is logged and left out of its batch: the rest of
the batch commits, and the session keeps its last good row. Raising instead would make
the write-behind queue retry the same batch forever.

Read side: list reads log and skip a row they cannot parse, so one bad row neither
answers 500 for every caller nor stops recovery. A single-row read raises
:class:`StoreError` naming the row.
"""

from __future__ import annotations

import json
import logging
import types
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel

from ash_ray.errors import StoreError
from ash_ray.models import EventRecord, MessageRecord

logger = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)

# What parsing a stored row can raise: pydantic's ValidationError is a ValueError, as is
# json's JSONDecodeError; a missing or mistyped column gives KeyError/TypeError.
UNREADABLE = (ValueError, TypeError, KeyError)

skipped_rows = 0
"""Rows left out by reads or writes in this process (for tests and metrics)."""


def _nullable(annotation: Any) -> bool:
    if annotation is None or annotation is Any:
        return True
    origin = get_origin(annotation)
    return origin in (Union, types.UnionType) and type(None) in get_args(annotation)


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def drop_nulls(model: type[BaseModel], data: Any) -> Any:
    """``data`` without the ``None`` values ``model`` does not accept, so defaults apply.

    Nested models are cleaned too; a ``None`` for a required field stays (and fails).
    """
    if not isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            out[key] = value
            continue
        if value is None and not _nullable(field.annotation) and not field.is_required():
            continue
        sub = _submodel(field.annotation)
        out[key] = drop_nulls(sub, value) if sub is not None else value
    return out


def load_json_model(model: type[M], text: Any) -> M:
    """A JSON column as ``model``, with nulls of defaulted fields read as the default."""
    return model.model_validate(drop_nulls(model, json.loads(text)))


def _skip(what: str, key: Any, exc: BaseException) -> None:
    global skipped_rows
    skipped_rows += 1
    logger.error("skipped unreadable %s row %s: %s: %s", what, key, type(exc).__name__, exc)


def parse_each(what: str, found: Iterable[Any], parse: Callable[[Any], T]) -> list[T]:
    """``parse`` of every row; a row that does not parse is logged and left out."""
    out: list[T] = []
    for row in found:
        try:
            out.append(parse(row))
        except UNREADABLE as exc:
            _skip(what, _row_key(row), exc)
    return out


def parse_one(what: str, key: str, row: Any, parse: Callable[[Any], T]) -> T:
    """``parse`` of one row; one that does not parse is a StoreError that names it."""
    try:
        return parse(row)
    except UNREADABLE as exc:
        logger.error("unreadable %s row %s: %s: %s", what, key, type(exc).__name__, exc)
        raise StoreError(
            f"the stored {what} {key} cannot be read ({type(exc).__name__}); "
            "the row was written outside ash-ray or by an incompatible version",
        ) from exc


def _row_key(row: Any) -> str:
    parts = []
    for col in ("id", "session_id", "sequence", "seq", "turn", "name"):
        try:
            parts.append(f"{col}={row[col]}")
        except (KeyError, IndexError, TypeError):
            continue
    return " ".join(parts[:2]) or "?"


async def fill_page(
    fetch: Callable[[int, int], Awaitable[Sequence[Any]]],
    parse: Callable[[Sequence[Any]], list[T]],
    limit: int,
    offset: int,
) -> list[T]:
    """Up to ``limit`` parsed rows from ``offset`` on, fetching past skipped rows.

    Callers page until a short page, so a page shortened by a skipped row would end their
    loop early; fetching on keeps "fewer than ``limit`` rows" meaning "no more rows".
    """
    out: list[T] = []
    while True:
        want = limit - len(out)
        found = await fetch(want, offset)
        out.extend(parse(found))
        if len(found) < want or len(out) >= limit:
            return out
        offset += len(found)


def encode_each(
    what: str,
    records: Iterable[R],
    encode: Callable[[R], tuple[Any, ...]],
    key: Callable[[R], str],
) -> list[tuple[Any, ...]]:
    """``encode`` of every record; one that cannot be stored as it would be read back is
    logged and left out (the rest of its batch is written)."""
    out = []
    for rec in records:
        try:
            out.append(encode(rec))
        except UNREADABLE as exc:
            _skip(f"{what} (not written)", key(rec), exc)
    return out


def normalized(rec: R) -> R:
    """``rec`` validated again by its own model, nulls of defaulted fields made defaults.

    Records built by ``model_copy(update=...)`` were never validated; this is the same
    validation the read side applies, so what passes here reads back.
    """
    model = type(rec)
    return model.model_validate(drop_nulls(model, rec.model_dump(warnings=False)))


def checked_message(rec: MessageRecord) -> MessageRecord:
    if rec.role not in ("user", "assistant"):
        raise ValueError(f"role {rec.role!r} is not user or assistant")
    return rec


def checked_event(rec: EventRecord) -> EventRecord:
    if not isinstance(rec.data, dict):
        raise TypeError(f"data is a {type(rec.data).__name__}, not an object")
    return rec
