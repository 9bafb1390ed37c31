"""The console's JSON: a user's training runs, one run's curves and checkpoints, the checkpoints
others published, and the server's figures. Authenticated like the REST API (X-API-Key), scoped to
the caller (another user's run is answered as an unknown one), and bounded per page.

The console's actions on checkpoints (publish, delete, set TTL) are the REST API's own routes."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Query

from anvil.errors import MAX_INT64
from gateway.checkpoint_expiry import is_expired
from gateway.deps import OwnerDep, ServiceDep
from gateway.routes.rest import checkpoint_json
from gateway.server_figures import server_figures
from gateway.service import Service
from gateway.store import TrainingRunRow
from gateway.store.sizes import store_sizes
from gateway.training_curves import MAX_STEPS

router = APIRouter(prefix="/console/api")
# rows per page, whatever limit asks for
MAX_RUNS_PAGE = 200
MAX_STEPS_PAGE = 2000
MAX_PUBLISHED = 100
# model ids are "<session id>:train:<n>"; anything longer names no run
RunId = Annotated[str, Path(min_length=1, max_length=256)]


async def _runs_json(service: Service, runs: list[TrainingRunRow]) -> list[dict]:
    """The runs as the console shows them (two queries for the page, whatever its size)."""
    steps = await service.run_curves.steps_done([run.model_id for run in runs])
    ended = await service.store.finished_sessions(sorted({run.session_id for run in runs}))
    return [_run_json(run, steps.get(run.model_id, 0), _state(service, run, ended)) for run in runs]


def _state(service: Service, run: TrainingRunRow, ended_sessions: set[str]) -> str:
    if service.press.has_model(run.model_id):
        return "loaded"
    return "session ended" if run.session_id in ended_sessions else "unloaded"


def _run_json(run: TrainingRunRow, steps_done: int, state: str) -> dict:
    return {
        "training_run_id": run.model_id,
        "session_id": run.session_id,
        "base_model": run.base_model,
        "lora_rank": run.lora["rank"],
        "created": run.created,
        "last_request_time": run.last_request,
        "steps_done": steps_done,
        "state": state,
        "user_metadata": run.user_metadata,
    }


@router.get("/me")
async def me(owner: OwnerDep) -> dict:
    """Who the key signs in as: the console's sign-in check."""
    return {"user_id": owner}


@router.get("/runs")
async def runs(
    service: ServiceDep, owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_INT64)] = 50, offset: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
) -> dict:
    rows, total = await service.store.training_runs(owner, min(limit, MAX_RUNS_PAGE), offset)
    return {
        "runs": await _runs_json(service, rows),
        "cursor": {"offset": offset, "limit": min(limit, MAX_RUNS_PAGE), "total_count": total},
    }


@router.get("/runs/{run_id}")
async def run(run_id: RunId, service: ServiceDep, owner: OwnerDep) -> dict:
    row = await service.owned_run(owner, run_id)
    return {
        "run": (await _runs_json(service, [row]))[0],
        "checkpoints": [checkpoint_json(c) for c in await service.checkpoints_of_run(row.model_id)],
    }


@router.get("/runs/{run_id}/metrics")
async def run_metrics(
    run_id: RunId, service: ServiceDep, owner: OwnerDep,
    after_step: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_INT64)] = MAX_STEPS_PAGE,
) -> dict:
    """The run's steps after `after_step`, oldest first; `more`: further steps follow this page."""
    row = await service.owned_run(owner, run_id)
    page = min(limit, MAX_STEPS_PAGE)
    points = await service.run_curves.points(row.model_id, after_step, page + 1)
    steps = await service.run_curves.steps_done([row.model_id])
    return {
        "training_run_id": row.model_id,
        "steps_done": steps.get(row.model_id, 0),
        "max_recorded_steps": MAX_STEPS,
        "points": [{"step": p.step, "values": p.values} for p in points[:page]],
        "more": len(points) > page,
    }


@router.get("/published")
async def published(
    service: ServiceDep, owner: OwnerDep, limit: Annotated[int, Query(ge=1, le=MAX_INT64)] = MAX_PUBLISHED
) -> dict:
    """Checkpoints other users published (readable by everyone), newest first."""
    rows = await service.store.published_by_others(owner, min(limit, MAX_PUBLISHED))
    return {
        "checkpoints": [
            {**checkpoint_json(row), "training_run_id": row.model_id, "base_model": base_model}
            for row, base_model in rows if not is_expired(row)
        ]
    }


@router.get("/server")
async def server(service: ServiceDep, owner: OwnerDep) -> dict:
    """For signed-in users, like every console page (the figures hold no user's data)."""
    return server_figures(service, await asyncio.to_thread(store_sizes, service.engine))
