"""`anvil serve --cluster ray`: trainer workers and sampler engines as Ray actors on this machine.

The SDK's integration tests run unchanged through it (and through a trainer worker sharded over
two actors); two different base models train concurrently on their own trainer actors with the
in-process server's results; killed actors are restarted, their
requests end with clear errors or succeed on retry, and training resumes from the last checkpoint.
"""

import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tinker
from model_folders import build_4x_folder
from sdk_helpers import ALIAS_MODEL, API_KEY, SAMPLER_ENGINE, TINY, sft_datum
from tinker import types

from gateway.local_server import AnvilServer, tiny_model_folder
from sampler.fleet import choose_engine_kind

pytest.importorskip("ray", reason="the ray extra is not installed (scripts/setup.sh installs it)")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ADAM = types.AdamParams(learning_rate=1e-2)
# a second base model of its own weights and shape (a shrunk Qwen3 with the real tokenizer)
OTHER = "test/qwen3-4x"
# what the suite run checks through a Ray-mode server: training, sampling, checkpoints, losses,
# the RL example, and (where the engine is vLLM: its processes to kill) an engine crash
SUITE = [
    "tests/integration/test_supervised.py",
    "tests/integration/test_sampling.py",
    "tests/integration/test_checkpoints.py",
    "tests/integration/test_losses_e2e.py",
    "tests/rl/test_examples.py::test_minimal_rl_loop",
]
if choose_engine_kind(SAMPLER_ENGINE)[0] == "vllm":
    SUITE.append("tests/integration/test_engine_crash.py")


@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> Path:
    return build_4x_folder(tmp_path_factory.mktemp("other-model") / "qwen3-4x")


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory, other_model):
    """One Ray runtime for the module: a trainer actor per base model, two torch sampler actors."""
    data_dir = tmp_path_factory.mktemp("anvil-ray")
    placement = data_dir / "placement.yaml"
    placement.write_text(
        f"default: {{trainers: 1, samplers: 2}}\nbase_models:\n  {TINY}: {{trainers: 1, samplers: 2}}\n"
        f"  {ALIAS_MODEL}: {{trainers: 1, samplers: 1}}\n  {OTHER}: {{trainers: 1, samplers: 1}}\n"
    )
    server = AnvilServer(
        data_dir,
        extra_models={ALIAS_MODEL: tiny_model_folder(data_dir), OTHER: other_model},
        args=["--cluster", "ray", "--placement", str(placement), "--sampler-engine", "torch", "--precision", "fp32"],
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def in_process_server(tmp_path_factory, other_model):
    """The same base models served the embedded way: no Ray, one process tree."""
    data_dir = tmp_path_factory.mktemp("anvil-in-process")
    server = AnvilServer(data_dir, extra_models={OTHER: other_model},
                         args=["--sampler-engine", "torch", "--precision", "fp32"])
    yield server
    server.stop()


def _actors(server: AnvilServer, kind: str) -> list[psutil.Process]:
    found = []
    for process in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if f"ray::{kind}" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.NoSuchProcess:
            pass
    return found


def _client(server: AnvilServer, key: str = API_KEY) -> tinker.ServiceClient:
    return tinker.ServiceClient(base_url=server.base_url, api_key=key)


def _train(service: tinker.ServiceClient, base_model: str, steps: int = 3) -> tuple[list[float], list[np.ndarray]]:
    """A fixed small SFT run: each step's loss, then the trained model's logprobs."""
    training = service.create_lora_training_client(base_model=base_model, rank=4, seed=7).result()
    data = [sft_datum([5 + i, 17, 33 + 2 * i, 60, 9 + i]) for i in range(3)]
    losses = []
    for _ in range(steps):
        fb = training.forward_backward(data, "cross_entropy")
        training.optim_step(ADAM).result()
        losses.append(fb.result().metrics["loss:sum"])
    logprobs = [np.asarray(out["logprobs"].data) for out in training.forward(data, "cross_entropy").result().loss_fn_outputs]
    return losses, logprobs


def test_two_base_models_train_concurrently_on_their_own_actors_as_in_process(ray_server, in_process_server):
    # two users, one per base model, at the same time
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = {
            base: pool.submit(_train, _client(ray_server, key), base)
            for base, key in ((TINY, "tml-ray-user-a"), (OTHER, "tml-ray-user-b"))
        }
        on_ray = {base: run.result(timeout=600) for base, run in runs.items()}
    assert len(_actors(ray_server, "TrainerActor")) == 2, "each base model has its own trainer actor"
    assert on_ray[TINY][0] != on_ray[OTHER][0], "two different models"
    in_process = _client(in_process_server)
    for base, (losses, logprobs) in on_ray.items():
        expected_losses, expected_logprobs = _train(in_process, base)
        assert losses == expected_losses, base
        for got, expected in zip(logprobs, expected_logprobs, strict=True):
            np.testing.assert_array_equal(got, expected)


def test_killed_actors_are_restarted_and_training_resumes_from_the_last_checkpoint(ray_server):
    service = _client(ray_server, "tml-ray-user-kill")
    training = service.create_lora_training_client(base_model=TINY, rank=4, seed=3).result()
    data = [sft_datum([4, 8, 15, 16, 23, 42])]
    for _ in range(2):
        training.forward_backward(data, "cross_entropy").result()
        training.optim_step(ADAM).result()
    checkpoint = training.save_state("before-kill").result().path
    saved = training.forward(data, "cross_entropy").result().loss_fn_outputs[0]["logprobs"].data
    training.forward_backward(data, "cross_entropy").result()
    training.optim_step(ADAM).result()  # a step after the save: lost with the actor
    sampler = training.save_weights_and_get_sampling_client().result()
    prompt = types.ModelInput.from_ints([4, 8, 15])
    sampler.sample(prompt, 1, types.SamplingParams(max_tokens=2)).result()  # the engines are up

    trainers = _actors(ray_server, "TrainerActor")
    samplers = _actors(ray_server, "SamplerActor")
    assert len(trainers) == 2 and len(samplers) >= 1
    params = types.SamplingParams(max_tokens=300, temperature=1.0, seed=1, stop=[])
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        pending = [pool.submit(lambda: sampler.sample(prompt, 1, params).result()) for _ in range(2)]
        time.sleep(1.0)  # the requests reach their engine
        for process in trainers + samplers:
            os.kill(process.pid, signal.SIGKILL)
        # sampling requests on the killed engines are retried on new ones and finish whole
        assert [len(r.sequences[0].tokens) for r in (f.result(timeout=300) for f in pending)] == [300, 300]

    # the first training request meets the dead actor: a clear server error naming what happened
    fb = training.forward_backward(data, "cross_entropy")
    step = training.optim_step(ADAM)
    with pytest.raises(tinker.RequestFailedError, match="died.*restored from its last saved state.*steps since that save were lost"):
        fb.result()
    with pytest.raises(tinker.RequestFailedError, match="send it again"):
        step.result()
    # then the model is the checkpoint's, and trains on from it
    assert training.forward(data, "cross_entropy").result().loss_fn_outputs[0]["logprobs"].data == saved
    training.forward_backward(data, "cross_entropy").result()
    training.optim_step(ADAM).result()
    # a new model from the same checkpoint, given the same step, agrees: nothing silently wrong
    again = service.create_training_client_from_state_with_optimizer(checkpoint).result()
    again.forward_backward(data, "cross_entropy").result()
    again.optim_step(ADAM).result()
    assert (again.forward(data, "cross_entropy").result().loss_fn_outputs[0]["logprobs"].data
            == training.forward(data, "cross_entropy").result().loss_fn_outputs[0]["logprobs"].data)
    assert len(_actors(ray_server, "TrainerActor")) == 2, "Ray restarted the trainer actors"


def test_a_model_never_saved_is_reported_lost_when_its_actor_dies(ray_server):
    service = _client(ray_server, "tml-ray-user-lost")
    training = service.create_lora_training_client(base_model=ALIAS_MODEL, rank=4, seed=3).result()
    data = [sft_datum([4, 8, 15, 16])]
    training.forward_backward(data, "cross_entropy").result()
    for process in _actors(ray_server, "TrainerActor"):
        os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(tinker.RequestFailedError, match="never saved.*create it again from a checkpoint"):
        training.forward_backward(data, "cross_entropy").result()
    with pytest.raises(tinker.RequestFailedError, match="create it again from a checkpoint"):
        training.forward(data, "cross_entropy").result()
    # the server keeps serving: a new model trains
    fresh = service.create_lora_training_client(base_model=ALIAS_MODEL, rank=4, seed=3).result()
    assert fresh.forward_backward(data, "cross_entropy").result().metrics["loss:sum"] > 0


def _run_suite(files: list[str], basetemp: Path, **env_vars: str) -> None:
    """Run test files unchanged against servers on a local Ray runtime (tests/conftest.py:
    ANVIL_TEST_CLUSTER=ray); every collected test must pass."""
    env = {**os.environ, "ANVIL_TEST_CLUSTER": "ray", "PYTHONPATH": str(ROOT), **env_vars}

    def pytest_run(*args: str, timeout: float) -> tuple[subprocess.CompletedProcess, str]:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, *files],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
        )
        return done, (done.stdout.strip().splitlines() or [""])[-1]

    _, collected = pytest_run("--collect-only", timeout=300)
    expected = int(re.match(r"(\d+) tests? collected", collected).group(1))
    done, summary = pytest_run("--basetemp", str(basetemp), timeout=1500)
    assert done.returncode == 0, f"{summary}\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    assert re.match(rf"{expected} passed in ", summary), f"{expected} collected, but: {summary}"


def test_the_integration_suite_and_the_rl_example_pass_through_a_ray_cluster(tmp_path):
    """1 trainer actor and 2 sampler actors of the configured engine, the test files unchanged."""
    _run_suite(SUITE, tmp_path / "run")


def test_training_and_the_rl_example_pass_through_a_trainer_sharded_over_two_actors(tmp_path):
    """The trainer worker spans two actors, FSDP2 sharding the base model's decoder layers over
    them (gloo here): training, checkpoints, every loss and the RL example, the files unchanged."""
    files = [f for f in SUITE if "sampling" not in f and "engine_crash" not in f]
    _run_suite(files, tmp_path / "run", ANVIL_TEST_TRAINER_SHARDS="2")
    logs = " ".join(log.read_text() for log in (tmp_path / "run").glob("*/server.log"))
    assert "trainer worker trainer:default#0: 2 actors shard its base models (FSDP2)" in logs
