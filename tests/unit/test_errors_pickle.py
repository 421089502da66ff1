"""Every error of the tree survives pickling, alone and inside Ray's RayTaskError.

Ray ships an actor's exception to the caller by pickling it (cloudpickle) and re-raises
it as a ``RayTaskError`` that is also an instance of the original class. No cluster is
needed to check that: the same objects are built here.
"""

from __future__ import annotations

import pickle
import re

import pytest
from ray import cloudpickle
from ray.exceptions import RayTaskError

from ash_ray import errors
from ash_ray.errors import AshError, AtCapacity, NotFound, SessionNotFound


def _tree() -> list[type[AshError]]:
    found, todo = [], [AshError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return [c for c in found if c.__module__ == errors.__name__]


ALL = _tree()


def test_the_tree_is_what_the_module_docstring_draws() -> None:
    drawn = set(re.findall(r"[─└├]── (\w+)", errors.__doc__ or "")) | {"AshError"}
    assert {c.__name__ for c in ALL} == drawn
    assert len(ALL) >= 17


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_round_trip_keeps_class_message_fields_and_status(cls, dumps) -> None:  # type: ignore[no-untyped-def]
    exc = cls("session 1 does not exist; create one", session_id="s-1", agent="helper")
    back = pickle.loads(dumps(exc))
    assert type(back) is cls
    assert str(back) == back.message == "session 1 does not exist; create one"
    assert back.fields == {"session_id": "s-1", "agent": "helper"}
    assert back.session_id == "s-1" and back.agent == "helper"  # type: ignore[attr-defined]
    assert back.http_status == cls.http_status


def test_none_fields_are_dropped_and_no_fields_work() -> None:
    back = pickle.loads(pickle.dumps(AtCapacity("full", session_id=None)))
    assert back.fields == {} and not hasattr(back, "session_id")


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_inside_ray_task_error_it_is_still_our_class(cls) -> None:  # type: ignore[no-untyped-def]
    cause = cls("nope", session_id="s-2")
    wrapped = RayTaskError("Registry.get_session", "Traceback ...\nnope", cause)
    raised = pickle.loads(cloudpickle.dumps(wrapped)).as_instanceof_cause()
    assert isinstance(raised, RayTaskError) and isinstance(raised, cls)
    assert isinstance(raised.cause, cls) and raised.cause.fields == {"session_id": "s-2"}
    assert raised.session_id == "s-2"  # type: ignore[attr-defined]  # reaches the cause
    assert raised.http_status == cls.http_status  # type: ignore[attr-defined]


def test_except_clauses_catch_the_wrapped_error() -> None:
    wrapped = RayTaskError("f", "tb", SessionNotFound("gone", session_id="x")).as_instanceof_cause()
    with pytest.raises(NotFound) as info:
        raise wrapped
    assert info.value.session_id == "x"  # type: ignore[attr-defined]
