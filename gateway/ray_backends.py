"""The trainer pool and sampling fleet of `anvil serve --cluster`: Ray actors behind the same
interfaces the press and the sampling scheduler use in-process."""

from collections.abc import Callable
from pathlib import Path

from anvil.base_models import BaseModelRegistry
from anvil.ray_cluster import ClusterSettings, connect, shutdown
from sampler.fleet import FleetConfig, SamplerFleet
from sampler.ray_engine import RaySamplingEngine
from trainer.ray_pool import RayTrainerPool


def ray_backends(
    cluster: ClusterSettings, sampling: FleetConfig, registry: BaseModelRegistry
) -> tuple[RayTrainerPool, SamplerFleet, Callable[[], None]]:
    """(trainer pool, sampling fleet, what closes both) on the cluster `cluster` names."""
    connect(cluster)
    placement = cluster.placement
    pool = RayTrainerPool(registry, placement, gpus=cluster.trainer_gpus)
    # an engine's vLLM parallelism spans that many devices, all in its actor's reservation
    engine_gpus = cluster.sampler_gpus * max(1, sampling.vllm_parallel.get("tensor_parallel_size", 1)) * max(
        1, sampling.vllm_parallel.get("data_parallel_size", 1)
    )

    def start_engine(kind: str, base_model: str, path: Path, vllm_options: dict):
        return RaySamplingEngine.start(kind, base_model, path, engine_gpus, vllm_options)

    fleet = SamplerFleet(
        registry, sampling, start_engine, samplers_of=lambda base: placement.of(placement.group_of(base)).samplers
    )

    def close() -> None:
        pool.close()
        shutdown()

    return pool, fleet, close
