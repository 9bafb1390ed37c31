"""The stored curves of training runs: per step, the value of every metric its results reported.

Call from worker threads (gateway/store/off_loop.py), never on the event loop.
"""

from dataclasses import dataclass

import sqlalchemy as sa

from gateway.store.tables import run_metrics, run_steps
from gateway.store.upsert import insert_or_replace


@dataclass(frozen=True)
class StepPoints:
    """One step's values (None where the result reported NaN or an infinity)."""

    model_id: str
    step: int
    values: dict[str, float | None]


class RunCurves:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def write(self, points: list[StepPoints], steps: dict[str, int], cleared: list[str] = ()) -> None:
        """Remove the curves of the `cleared` runs, then upsert the points (a step's value replaces
        what was stored for it) and the runs' step counts, in one transaction."""
        with self._engine.begin() as db:
            if cleared:
                db.execute(sa.delete(run_metrics).where(run_metrics.c.model_id.in_(cleared)))
                db.execute(sa.delete(run_steps).where(run_steps.c.model_id.in_(cleared)))
            for point in points:
                for name, value in point.values.items():
                    insert_or_replace(db, run_metrics, {
                        "model_id": point.model_id, "step": point.step, "name": name, "value": value,
                    })
            for model_id, count in steps.items():
                insert_or_replace(db, run_steps, {"model_id": model_id, "steps": count})

    def points(self, model_id: str, after_step: int, max_steps: int) -> list[StepPoints]:
        """The steps after `after_step`, oldest first, at most `max_steps` of them."""
        in_range = sa.and_(run_metrics.c.model_id == model_id, run_metrics.c.step > after_step)
        with self._engine.connect() as db:
            steps = list(db.scalars(
                sa.select(run_metrics.c.step).where(in_range).distinct().order_by(run_metrics.c.step).limit(max_steps)
            ))
            if not steps:
                return []
            rows = db.execute(
                sa.select(run_metrics.c.step, run_metrics.c.name, run_metrics.c.value)
                .where(in_range, run_metrics.c.step <= steps[-1])
                .order_by(run_metrics.c.step, run_metrics.c.name)
            ).all()
        by_step: dict[int, dict[str, float | None]] = {}
        for step, name, value in rows:
            by_step.setdefault(step, {})[name] = value
        return [StepPoints(model_id, step, values) for step, values in by_step.items()]

    def steps_done(self, model_ids: list[str]) -> dict[str, int]:
        """optim_steps done by each of the runs (absent: none)."""
        if not model_ids:
            return {}
        query = sa.select(run_steps.c.model_id, run_steps.c.steps).where(run_steps.c.model_id.in_(model_ids))
        with self._engine.connect() as db:
            return {model_id: steps for model_id, steps in db.execute(query)}
