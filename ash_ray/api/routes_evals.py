"""/api/agents/{name}/eval-cases, /eval-runs, /eval-results: Ash's evals (section 1.9).

Cases, runs and results are the caller's tenant's (another tenant's id is a 404, in lists
too), of the tenant's agent of that name; a run's cases run in sessions of that tenant.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ash_ray.api.deps import AgentName, Caller, Ctx, fails
from ash_ray.api.schemas import Out
from ash_ray.errors import InvalidInput, NotFound
from ash_ray.models import LIST_MAX, PROMPT_MAX

router = APIRouter(prefix="/api/agents/{name}", tags=["evals"])

Text = Annotated[str, Field(max_length=PROMPT_MAX)]
Topics = Annotated[list[Annotated[str, Field(min_length=1, max_length=1000)]],
                   Field(max_length=LIST_MAX)]
Id = Annotated[UUID, Path(description="A UUID; anything else is a 400.")]


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ChatTurn(_Body):
    role: Literal["user", "assistant"]
    content: Text


class CaseBody(_Body):
    question: Text = Field(min_length=1)
    expected_topics: Topics = []
    expected_not_topics: Topics = []
    reference_answer: Text | None = None
    category: Annotated[str, Field(max_length=255)] | None = None
    tags: Topics = []
    chat_history: Annotated[list[ChatTurn], Field(max_length=LIST_MAX)] = []
    is_active: bool = True

    def wire(self, unset: bool = True) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_unset=not unset, mode="json")


class CasePatch(CaseBody):
    question: Text | None = Field(None, min_length=1)  # type: ignore[assignment]


class CaseImport(_Body):
    cases: Annotated[list[CaseBody], Field(max_length=10_000)]


class RunCreate(_Body):
    version_number: int | None = Field(None, ge=1)
    categories: Topics | None = None
    tags: Topics | None = None


class ScoreBody(_Body):
    result_id: UUID | None = None
    human_score: int | None = Field(None, ge=1, le=5)
    human_notes: Text | None = None


class ResultPatch(_Body):
    human_score: int | None = Field(None, ge=1, le=5)
    human_notes: Text | None = None


# ---------------------------------------------------------------- answers


class CaseOut(Out):
    id: str
    agent_name: str = Field(alias="agentName")
    question: str
    is_active: bool = Field(alias="isActive")


class RunOut(Out):
    id: str
    agent_name: str = Field(alias="agentName")
    status: Literal["pending", "running", "completed", "failed"]
    total_cases: int = Field(alias="totalCases")
    pass_rate: float | None = Field(alias="passRate")


class ResultOut(Out):
    id: str
    run_id: str = Field(alias="runId")
    case_id: str = Field(alias="caseId")
    status: str


class CaseReply(BaseModel):
    case: CaseOut


class CaseList(BaseModel):
    cases: list[CaseOut]


class Imported(BaseModel):
    imported: int


class RunReply(BaseModel):
    run: RunOut


class RunList(BaseModel):
    runs: list[RunOut]


class ResultReply(BaseModel):
    result: ResultOut


class ResultList(BaseModel):
    results: list[ResultOut]


class Scored(ResultList):
    scored: int


class Comparison(Out):
    run_a: RunOut = Field(alias="runA")
    run_b: RunOut = Field(alias="runB")
    results: list[dict[str, Any]]


class ComparisonReply(BaseModel):
    comparison: Comparison


def _found(value: Any, what: str) -> Any:
    if value is None:
        raise NotFound(f"{what} not found")
    return value


# ---------------------------------------------------------------- cases


@router.post("/eval-cases/import", response_model=Imported, responses=fails(400, 404, 413))
async def import_cases(
    name: AgentName, body: CaseImport, ctx: Ctx, caller: Caller
) -> dict[str, Any]:
    await ctx.registry.get_agent(name, caller.tenant)
    cases = [c.wire() for c in body.cases]
    imported = await ctx.jobs.evals("import_cases", name, cases, tenant=caller.tenant)
    return {"imported": imported}


@router.get("/eval-cases/export", response_model=CaseList, responses=fails(400))
async def export_cases(name: AgentName, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    return {"cases": await ctx.jobs.evals("list_cases", name, tenant=caller.tenant)}


@router.get("/eval-cases", response_model=CaseList, responses=fails(400))
async def list_cases(
    name: AgentName, ctx: Ctx, caller: Caller,
    category: Annotated[str | None, Query(max_length=255)] = None,
    is_active: Annotated[bool | None, Query(alias="isActive")] = None,
) -> dict[str, Any]:
    found = await ctx.jobs.evals("list_cases", name, category, is_active, tenant=caller.tenant)
    return {"cases": found}


@router.post(
    "/eval-cases", status_code=201, response_model=CaseReply, responses=fails(400, 404, 413)
)
async def create_case(
    name: AgentName, body: CaseBody, ctx: Ctx, caller: Caller
) -> dict[str, Any]:
    await ctx.registry.get_agent(name, caller.tenant)
    case = await ctx.jobs.evals("create_case", name, body.wire(), tenant=caller.tenant)
    return {"case": case}


@router.get("/eval-cases/{case_id}", response_model=CaseReply, responses=fails(400, 404))
async def get_case(name: AgentName, case_id: Id, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    found = await ctx.jobs.evals("get_case", name, str(case_id), tenant=caller.tenant)
    return {"case": _found(found, f"eval case {case_id}")}


@router.patch("/eval-cases/{case_id}", response_model=CaseReply, responses=fails(400, 404))
async def update_case(
    name: AgentName, case_id: Id, body: CasePatch, ctx: Ctx, caller: Caller
) -> dict[str, Any]:
    patch = body.wire(unset=False)
    if patch.get("question", "") is None:
        raise InvalidInput("question: may not be null")
    if not patch:
        return await get_case(name, case_id, ctx, caller)
    found = await ctx.jobs.evals("update_case", name, str(case_id), patch, tenant=caller.tenant)
    return {"case": _found(found, f"eval case {case_id}")}


@router.delete("/eval-cases/{case_id}", status_code=204, responses=fails(400, 404))
async def delete_case(name: AgentName, case_id: Id, ctx: Ctx, caller: Caller) -> Response:
    deleted = await ctx.jobs.evals("delete_case", name, str(case_id), tenant=caller.tenant)
    _found(deleted or None, f"eval case {case_id}")
    return Response(status_code=204)


# ---------------------------------------------------------------- runs


@router.post("/eval-runs", status_code=201, response_model=RunReply, responses=fails(400, 404))
async def create_run(
    name: AgentName, body: RunCreate, ctx: Ctx, caller: Caller
) -> dict[str, Any]:
    """One pending result per matching active case; the jobs actor runs them.

    ``versionNumber`` names one of the agent's versions (``/versions``): every case runs
    with that version's system prompt, also when another one is active (Ash used the
    active one's). Without it, the version active now, if the agent has versions.
    """
    await ctx.registry.get_agent(name, caller.tenant)  # 404 for an unknown agent
    version = body.version_number
    if version is None:
        versions = await ctx.registry.agent_op("versions.list", name, tenant=caller.tenant)
        version = next((v.version_number for v in versions if v.is_active), None)
    else:
        try:
            await ctx.registry.agent_op(
                "versions.get", name, str(version), tenant=caller.tenant
            )
        except NotFound:
            raise InvalidInput(
                f"versionNumber {version}: agent {name!r} has no such version"
            ) from None
    run = await ctx.jobs.evals(
        "create_run", name, version, body.categories, body.tags, tenant=caller.tenant
    )
    return {"run": run}


@router.get("/eval-runs", response_model=RunList, responses=fails(400))
async def list_runs(name: AgentName, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    return {"runs": await ctx.jobs.evals("list_runs", name, tenant=caller.tenant)}


@router.get("/eval-runs/compare", response_model=ComparisonReply, responses=fails(400, 404))
async def compare(
    name: AgentName, ctx: Ctx, caller: Caller,
    run_a: Annotated[UUID, Query(alias="runA")], run_b: Annotated[UUID, Query(alias="runB")],
) -> dict[str, Any]:
    found = await ctx.jobs.evals("compare", name, str(run_a), str(run_b), tenant=caller.tenant)
    return {"comparison": _found(found, "eval run")}


@router.get("/eval-runs/{run_id}", response_model=RunReply, responses=fails(400, 404))
async def get_run(name: AgentName, run_id: Id, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    found = await ctx.jobs.evals("get_run", name, str(run_id), tenant=caller.tenant)
    return {"run": _found(found, f"eval run {run_id}")}


@router.get("/eval-runs/{run_id}/results", response_model=ResultList, responses=fails(400, 404))
async def results(name: AgentName, run_id: Id, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    found = await ctx.jobs.evals("run_results", name, str(run_id), tenant=caller.tenant)
    return {"results": _found(found, f"eval run {run_id}")}


@router.post("/eval-runs/{run_id}/score", response_model=Scored, responses=fails(400, 404))
async def score(
    name: AgentName, run_id: Id, body: ScoreBody, ctx: Ctx, caller: Caller
) -> dict[str, Any]:
    """Human scores on one result (``resultId``) or on every result of the run."""
    found = await ctx.jobs.evals(
        "score", name, str(run_id), str(body.result_id) if body.result_id else None,
        body.human_score, body.human_notes, tenant=caller.tenant,
    )
    scored, rows = _found(found, f"eval run {run_id}")
    return {"scored": scored, "results": rows}


@router.patch("/eval-results/{result_id}", response_model=ResultReply, responses=fails(400, 404))
async def patch_result(
    name: AgentName, result_id: Id, body: ResultPatch, ctx: Ctx, caller: Caller
) -> dict[str, Any]:
    found = await ctx.jobs.evals(
        "patch_result", name, str(result_id), body.human_score, body.human_notes,
        tenant=caller.tenant,
    )
    return {"result": _found(found, f"eval result {result_id}")}
