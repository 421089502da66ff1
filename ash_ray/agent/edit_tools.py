"""MultiEdit and NotebookEdit, Claude Code's two compound editing tools.

Both are blocking functions run in a worker thread like :mod:`.file_tools`, confine
their path with ``sandbox.resolve`` and change nothing unless every step succeeds.
Notebooks are edited as plain JSON (nbformat 4): the cells' ``source`` and, for code
cells, cleared ``outputs`` and ``execution_count``, as Claude Code does.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ash_ray.agent.file_tools import FileContext, ToolFailure, write


def multi_edit(ctx: FileContext, args: dict[str, Any]) -> str:
    """Apply ``edits`` in order to one file; all of them or none."""
    path = ctx.sandbox.resolve(args["file_path"])
    edits = args["edits"]
    if not isinstance(edits, list) or not edits:
        raise ToolFailure("edits must be a non-empty list of {old_string, new_string}")
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    elif isinstance(edits[0], dict) and edits[0].get("old_string") == "":
        text = None  # creating a new file: the first edit's new_string is its content
    else:
        raise ToolFailure(f"File does not exist: {args['file_path']}")
    for number, item in enumerate(edits, start=1):
        if not isinstance(item, dict) or "old_string" not in item or "new_string" not in item:
            raise ToolFailure(f"edit {number} needs old_string and new_string")
        old, new = str(item["old_string"]), str(item["new_string"])
        if text is None:
            text = new
            continue
        if old == new:
            raise ToolFailure(f"edit {number}: old_string and new_string are the same")
        count = text.count(old) if old else 0
        if count == 0:
            raise ToolFailure(f"edit {number}: old_string was not found (no edit was applied)")
        if count > 1 and not item.get("replace_all"):
            raise ToolFailure(
                f"edit {number}: old_string occurs {count} times; add context or set "
                "replace_all (no edit was applied)"
            )
        text = text.replace(old, new) if item.get("replace_all") else text.replace(old, new, 1)
    if text is None or len(text.encode()) > ctx.max_write_bytes:
        raise ToolFailure(f"the result exceeds the file size limit of {ctx.max_write_bytes} bytes")
    write(ctx, {"file_path": args["file_path"], "content": text})
    return f"Applied {len(edits)} edit(s) to {path}."


def _cell_index(cells: list[dict[str, Any]], cell_id: str) -> int:
    for index, cell in enumerate(cells):
        if cell.get("id") == cell_id:
            return index
    # Claude Code also accepts a position ("3" or "cell-3") for cells without ids.
    raw = cell_id.removeprefix("cell-")
    if raw.isdigit() and int(raw) < len(cells):
        return int(raw)
    raise ToolFailure(f"no cell with id {cell_id!r} in the notebook")


def notebook_edit(ctx: FileContext, args: dict[str, Any]) -> str:
    """Replace, insert (after ``cell_id``, or first) or delete one cell of a .ipynb file."""
    path = ctx.sandbox.resolve(args["notebook_path"])
    if path.suffix != ".ipynb":
        raise ToolFailure("notebook_path must be a .ipynb file")
    if not path.is_file():
        raise ToolFailure(f"Notebook does not exist: {args['notebook_path']}")
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cells = notebook["cells"]
    except (ValueError, KeyError, TypeError):
        raise ToolFailure(f"{args['notebook_path']} is not a valid notebook") from None
    mode = args.get("edit_mode") or "replace"
    cell_id = args.get("cell_id")
    source = str(args.get("new_source") or "")
    if mode == "insert":
        kind = args.get("cell_type")
        if kind not in ("code", "markdown"):
            raise ToolFailure("cell_type (code or markdown) is required to insert a cell")
        cell: dict[str, Any] = {"cell_type": kind, "id": uuid.uuid4().hex[:8], "metadata": {}}
        cell["source"] = source
        if kind == "code":
            cell.update(outputs=[], execution_count=None)
        at = _cell_index(cells, str(cell_id)) + 1 if cell_id else 0
        cells.insert(at, cell)
        done = f"Inserted a {kind} cell at position {at}"
    elif mode in ("replace", "delete"):
        if not cell_id:
            raise ToolFailure(f"cell_id is required to {mode} a cell")
        at = _cell_index(cells, str(cell_id))
        if mode == "delete":
            del cells[at]
            done = f"Deleted cell {cell_id}"
        else:
            target = cells[at]
            target["source"] = source
            if args.get("cell_type") in ("code", "markdown"):
                target["cell_type"] = args["cell_type"]
            if target.get("cell_type") == "code":
                target.update(outputs=[], execution_count=None)
            else:
                target.pop("outputs", None)
                target.pop("execution_count", None)
            done = f"Updated cell {cell_id}"
    else:
        raise ToolFailure("edit_mode must be replace, insert or delete")
    content = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    write(ctx, {"file_path": str(path), "content": content})
    return f"{done} in {path}."
