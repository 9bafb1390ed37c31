"""Joining or starting the Ray runtime that trainer workers and sampler engines run on.

Imported only when `anvil serve --cluster` is given: the embedded default never imports Ray.
Actors import this project, so the job's runtime environment puts the project's folder on
PYTHONPATH (on a multi-node cluster that folder and the data dir must be the same path on every
node: a shared filesystem, docs/scaling.md) and carries the process-wide precision, so actors
load base weights in the dtype the gateway resolved.
"""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from anvil.device import resolved_precision
from anvil.placement import Placement

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# how often Ray restarts a dead actor before its handle stays dead (-1 would be forever)
ACTOR_MAX_RESTARTS = 4


@dataclass(frozen=True)
class ClusterSettings:
    # "ray": start a local Ray runtime; "auto" or "ray://HOST:PORT": join a running cluster
    address: str = "ray"
    trainer_gpus: float = 0.0  # GPUs each trainer actor reserves
    sampler_gpus: float = 0.0  # GPUs each sampler actor reserves
    placement: Placement = field(default_factory=Placement)


def connect(settings: ClusterSettings) -> None:
    """Start or join the Ray runtime for this process (idempotent)."""
    import ray

    if ray.is_initialized():
        return
    env_vars = {
        "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "ANVIL_PRECISION": resolved_precision(),
        # torch in an actor that reserves no CPU would otherwise run one thread (Ray's default)
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1)),
    }
    for name in ("HF_HUB_OFFLINE", "ANVIL_VLLM_KV_CACHE_BYTES"):
        if name in os.environ:
            env_vars[name] = os.environ[name]
    runtime_env = {"env_vars": env_vars}
    if settings.address == "ray":
        ray.init(runtime_env=runtime_env, include_dashboard=False, log_to_driver=True)
        log.info("started a local Ray runtime: %s", ray.cluster_resources())
    else:
        ray.init(address=settings.address, runtime_env=runtime_env, log_to_driver=True)
        log.info("joined the Ray cluster at %s: %s", settings.address, ray.cluster_resources())


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def actor_options(gpus: float) -> dict:
    """Options every anvil actor is created with. CPUs are not reserved: on a CPU machine the
    actors share the cores as the in-process parts do; GPUs are what placement is about."""
    return {"num_cpus": 0, "num_gpus": gpus, "max_restarts": ACTOR_MAX_RESTARTS, "max_task_retries": 0}
