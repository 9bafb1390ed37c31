"""The tinker-cookbook's offline recipes, run unchanged against anvil.

Each test runs one recipe of tinker-cookbook 0.6.1 as its own process (`python -m
tinker_cookbook.recipes...`, as its README says to), pointed at an anvil server that serves the tiny
model under real model names (`--model Qwen/Qwen3-8B=<tiny folder>`), with settings small enough for
a CPU. The recipes load their tokenizer by model name; with HF_HUB_OFFLINE=1 a folder of that
relative name in the working directory (a symlink to the tiny model) satisfies them. Each test then
checks what the recipe wrote: its metrics.jsonl has one record per step with finite losses /
rewards, its checkpoints.jsonl names checkpoints that anvil lists, and the server answered no
request with an error.

Only recipes that need no network data run here: SFT on a local JSONL file (chat_sl, sl_basic,
prompt_distillation) and RL environments that make their problems locally (math_rl arithmetic, sync
and async; rl_basic on arithmetic; guess-the-number; twenty questions; tic-tac-toe; preference
"shorter"; rubric-graded arithmetic). Install the cookbook with scripts/install_cookbook.sh.
"""

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip(
    "tinker_cookbook",
    reason="tinker-cookbook is not installed (run scripts/install_cookbook.sh)",
)

import tinker  # noqa: E402
import tinker_cookbook  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

API_KEY = "tml-cookbook-tests"
POLICY_MODEL = "Qwen/Qwen3-8B"
# twenty questions samples its answerer from this base model; the recipe's CLI cannot change it
ANSWERER_MODEL = "Qwen/Qwen3.5-9B"
SAMPLER_ENGINE = os.environ.get("ANVIL_TEST_SAMPLER_ENGINE", "auto")
RECIPE_TIMEOUT_S = 240
COOKBOOK_DATA = Path(tinker_cookbook.__file__).parent / "example_data"
# an access-log line of a request the server answered with an error
ERROR_STATUS = re.compile(r'"[A-Z]+ (\S+) HTTP/1\.[01]" ([45]\d\d)')


@pytest.fixture(scope="module")
def cookbook_server(tmp_path_factory):
    from gateway.local_server import AnvilServer, tiny_model_folder

    data_dir = tmp_path_factory.mktemp("anvil-cookbook-data")
    folder = tiny_model_folder(data_dir)
    server = AnvilServer(
        data_dir,
        extra_models={POLICY_MODEL: folder, ANSWERER_MODEL: folder},
        args=["--sampler-engine", SAMPLER_ENGINE],
    )
    server.model_folder = folder
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rest_client(cookbook_server):
    return tinker.RestClient(base_url=cookbook_server.base_url, api_key=API_KEY)


@pytest.fixture
def workdir(tmp_path, cookbook_server):
    """A recipe's working directory: `Qwen/<name>` folders for the tokenizer-by-name lookups."""
    (tmp_path / "Qwen").mkdir()
    for name in (POLICY_MODEL, ANSWERER_MODEL):
        (tmp_path / name).symlink_to(cookbook_server.model_folder, target_is_directory=True)
    return tmp_path


def run_recipe(server, workdir: Path, module: str, *args: str) -> Path:
    """Run `python -m module args...` in `workdir` against `server`; return its log_path."""
    log_path = workdir / "run"
    env = {
        **os.environ,
        "TINKER_BASE_URL": server.base_url,
        "TINKER_API_KEY": API_KEY,
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "TINKER_TELEMETRY": "0",
        "TINKER_COOKBOOK_RUNS_DIR": str(workdir / "tinker-runs"),
        "TOKENIZERS_PARALLELISM": "false",
    }
    log_offset = server.log_path.stat().st_size
    output = workdir / "recipe-output.log"
    started = time.monotonic()
    with open(output, "w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", module, *args, f"log_path={log_path}"],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            timeout=RECIPE_TIMEOUT_S,
        )
    elapsed = time.monotonic() - started
    tail = "\n".join(output.read_text(errors="replace").splitlines()[-60:])
    assert proc.returncode == 0, f"{module} exited {proc.returncode} after {elapsed:.0f} s:\n{tail}"
    with open(server.log_path, errors="replace") as log:
        log.seek(log_offset)
        server_lines = log.read().splitlines()
    errors = [line for line in server_lines if ERROR_STATUS.search(line) or "Traceback" in line]
    assert not errors, f"anvil answered {module}'s requests with errors:\n" + "\n".join(errors[:20])
    return log_path


def metrics(log_path: Path) -> list[dict]:
    records = [json.loads(line) for line in (log_path / "metrics.jsonl").read_text().splitlines() if line]
    for record in records:
        for key, value in record.items():
            if isinstance(value, float):
                assert math.isfinite(value), f"metric {key} of step {record.get('step')} is {value}"
    return records


def step_records(log_path: Path, key: str, steps: int) -> list[dict]:
    """The records of the training steps (those that carry `key`): exactly `steps`, in order."""
    records = [r for r in metrics(log_path) if key in r]
    assert [r["step"] for r in records] == list(range(steps)), records
    return records


def assert_rl_steps(log_path: Path, steps: int) -> list[dict]:
    records = step_records(log_path, "env/all/reward/total", steps)
    for record in records:
        assert record["env/all/total_episodes"] > 0
        assert record["tokens/sampled"] > 0 and record["tokens/trained"] > 0
        # the trainer's logprobs of the sampled tokens agree with the sampler's
        assert abs(record["optim/kl_sample_train_v1"]) < 1e-3, record["optim/kl_sample_train_v1"]
    return records


def assert_sl_steps(log_path: Path, steps: int) -> list[dict]:
    records = step_records(log_path, "train_mean_nll", steps)
    for record in records:
        assert 0.0 < record["train_mean_nll"] < 20.0
        assert record["num_sequences"] > 0 and record["num_loss_tokens"] > 0
    return records


def assert_checkpoints_listed(log_path: Path, rest_client, names: set[str]) -> dict:
    """checkpoints.jsonl has `names` (plus "final"), and anvil lists each one's two paths."""
    rows = [json.loads(line) for line in (log_path / "checkpoints.jsonl").read_text().splitlines() if line]
    by_name = {row["name"]: row for row in rows}
    assert names | {"final"} <= set(by_name), sorted(by_name)
    final = by_name["final"]
    model_id = final["state_path"].removeprefix("tinker://").split("/", 1)[0]
    listed = {c.tinker_path for c in rest_client.list_checkpoints(model_id).result().checkpoints}
    for row in rows:
        assert row["state_path"] in listed and row["sampler_path"] in listed, (row, sorted(listed))
    return final


def test_chat_sl_on_a_local_jsonl_file(cookbook_server, workdir, rest_client):
    log_path = run_recipe(
        cookbook_server, workdir, "tinker_cookbook.recipes.chat_sl.train",
        f"base_url={cookbook_server.base_url}", f"model_name={POLICY_MODEL}",
        f"dataset={COOKBOOK_DATA / 'conversations.jsonl'}",
        "batch_size=16", "max_length=512", "lora_rank=4", "learning_rate=1e-3", "max_steps=3",
        "save_every=2", "eval_every=0", "infrequent_eval_every=0", "behavior_if_log_dir_exists=delete",
    )
    records = assert_sl_steps(log_path, 3)
    assert records[-1]["train_mean_nll"] < records[0]["train_mean_nll"], [r["train_mean_nll"] for r in records]
    final = assert_checkpoints_listed(log_path, rest_client, {"000002"})
    # the recipe's final sampler weights serve samples
    service = tinker.ServiceClient(base_url=cookbook_server.base_url, api_key=API_KEY)
    sampler = service.create_sampling_client(model_path=final["sampler_path"]).result()
    tokenizer = AutoTokenizer.from_pretrained(str(workdir / POLICY_MODEL))  # as the recipe loaded it
    prompt = tinker.types.ModelInput.from_ints(tokenizer.encode("The capital of France is"))
    result = sampler.sample(prompt, 2, tinker.types.SamplingParams(max_tokens=6, seed=0)).result()
    assert len(result.sequences) == 2 and all(1 <= len(s.tokens) <= 6 for s in result.sequences)


def test_sl_basic_with_a_conversation_file_builder(cookbook_server, workdir, rest_client):
    log_path = run_recipe(
        cookbook_server, workdir, "tinker_cookbook.recipes.sl_basic",
        f"base_url={cookbook_server.base_url}", f"model_name={POLICY_MODEL}", "lora_rank=4",
        "max_steps=2", "eval_every=0", "save_every=1",
        "dataset_builder=tinker_cookbook.supervised.data:FromConversationFileBuilder",
        f"dataset_builder.file_path={COOKBOOK_DATA / 'conversations.jsonl'}",
        f"dataset_builder.common_config.model_name_for_tokenizer={POLICY_MODEL}",
        "dataset_builder.common_config.renderer_name=qwen3",
        "dataset_builder.common_config.batch_size=16", "dataset_builder.common_config.max_length=512",
    )
    assert_sl_steps(log_path, 2)
    assert_checkpoints_listed(log_path, rest_client, {"000001"})


def test_prompt_distillation_train_on_a_local_jsonl_file(cookbook_server, workdir, rest_client):
    log_path = run_recipe(
        cookbook_server, workdir, "tinker_cookbook.recipes.prompt_distillation.train",
        f"base_url={cookbook_server.base_url}", f"model_name={POLICY_MODEL}",
        f"file_path={COOKBOOK_DATA / 'conversations.jsonl'}", "batch_size=32", "max_length=512",
        "lora_rank=4", "num_epochs=1", "max_steps=2", "save_every=0", "eval_every=0",
        "behavior_if_log_dir_exists=delete",
    )
    assert_sl_steps(log_path, 2)
    assert_checkpoints_listed(log_path, rest_client, set())


def test_math_rl_arithmetic(cookbook_server, workdir, rest_client):
    # loss_fn: the recipe's default, stable_reinforce, is not one of anvil's losses yet
    log_path = run_recipe(
        cookbook_server, workdir, "tinker_cookbook.recipes.math_rl.train",
        f"base_url={cookbook_server.base_url}", f"model_name={POLICY_MODEL}", "env=arithmetic",
        "group_size=4", "groups_per_batch=2", "max_tokens=5", "lora_rank=4", "max_steps=2",
        "eval_every=0", "save_every=1", "loss_fn=importance_sampling", "behavior_if_log_dir_exists=delete",
    )
    assert_rl_steps(log_path, 2)
    assert_checkpoints_listed(log_path, rest_client, {"000001", "000002"})


def test_math_rl_arithmetic_async_off_policy(cookbook_server, workdir, rest_client):
    log_path = run_recipe(
        cookbook_server, workdir, "tinker_cookbook.recipes.math_rl.train",
        f"base_url={cookbook_server.base_url}", f"model_name={POLICY_MODEL}", "env=arithmetic",
        "group_size=4", "groups_per_batch=2", "max_tokens=5", "lora_rank=4", "max_steps=3",
        "eval_every=0", "save_every=2", "loss_fn=ppo", "max_steps_off_policy=1",
        "behavior_if_log_dir_exists=delete",
    )
    records = assert_rl_steps(log_path, 3)
    assert max(r["async/staleness_max"] for r in records) <= 1
    assert_checkpoints_listed(log_path, rest_client, {"000002"})


def test_rl_basic_on_arithmetic(cookbook_server, workdir, rest_client):
    log_path = run_recipe(
        cookbook_server, workdir, "tinker_cookbook.recipes.rl_basic",
        f"base_url={cookbook_server.base_url}", f"model_name={POLICY_MODEL}", "lora_rank=4",
        "max_tokens=8", "max_steps=2", "save_every=0",
        "dataset_builder=tinker_cookbook.recipes.math_rl.arithmetic_env:ArithmeticDatasetBuilder",
        "dataset_builder.batch_size=2", "dataset_builder.group_size=4", "dataset_builder.n_batches=2",
        f"dataset_builder.model_name_for_tokenizer={POLICY_MODEL}", "dataset_builder.renderer_name=qwen3",
    )
    assert_rl_steps(log_path, 2)
    assert_checkpoints_listed(log_path, rest_client, set())


def test_guess_number(cookbook_server, workdir, rest_client):
    # reads TINKER_BASE_URL only; renderer: the Qwen3 one for the recipe's default qwen3_5 one
    log_path = run_recipe(
        cookbook_server, workdir, "tinker_cookbook.recipes.multiplayer_rl.guess_number.train",
        f"model_name={POLICY_MODEL}", "renderer_name=qwen3_disable_thinking", "batch_size=1",
        "group_size=2", "max_tokens=8", "max_steps=2", "eval_every=0", "save_every=1",
        "behavior_if_log_dir_exists=delete",
    )
    records = assert_rl_steps(log_path, 2)
    assert all(r["env/all/turns_per_episode"] >= 1 for r in records)
    assert_checkpoints_listed(log_path, rest_client, {"000001", "000002"})


def test_twenty_questions(cookbook_server, workdir, rest_client):
    log_path = run_recipe(
        cookbook_server, workdir, "tinker_cookbook.recipes.multiplayer_rl.twenty_questions.train",
        f"model_name={POLICY_MODEL}", "renderer_name=qwen3_disable_thinking", "batch_size=1",
        "group_size=2", "num_epochs=1", "max_tokens=8", "max_steps=1", "eval_every=0", "save_every=0",
        "behavior_if_log_dir_exists=delete",
    )
    records = assert_rl_steps(log_path, 1)
    assert records[0]["env/all/turns_per_episode"] >= 1
    assert_checkpoints_listed(log_path, rest_client, set())


def test_text_arena_tic_tac_toe(cookbook_server, workdir, rest_client):
    pytest.importorskip("textarena", reason="textarena is not installed (run scripts/install_cookbook.sh)")
    log_path = run_recipe(
        cookbook_server, workdir, "tinker_cookbook.recipes.multiplayer_rl.text_arena.train",
        f"model_name={POLICY_MODEL}", "renderer_name=qwen3_disable_thinking", "batch_size=2",
        "num_train_datapoints=4", "num_test_datapoints=2", "max_tokens=16", "max_steps=2",
        "eval_every=0", "save_every=1", "behavior_if_log_dir_exists=delete",
    )
    assert_rl_steps(log_path, 2)
    assert_checkpoints_listed(log_path, rest_client, {"000001", "000002"})


def test_preference_shorter(cookbook_server, workdir, rest_client):
    # rewards differ within each group, so these steps train on non-zero advantages; the recipe
    # also computes KL between the weights before and after each step (compute_logprobs)
    log_path = run_recipe(
        cookbook_server, workdir, "tinker_cookbook.recipes.preference.shorter.train",
        f"model_name={POLICY_MODEL}", "renderer_name=qwen3_disable_thinking", "batch_size=2",
        "group_size=4", "max_tokens=16", "max_steps=2", "eval_every=0",
        "behavior_if_log_dir_exists=delete",
    )
    records = assert_rl_steps(log_path, 2)
    for record in records:
        assert record["grad_norm:mean"] > 0
        assert abs(record["kl_pre_post_v1"]) < 1.0
    assert_checkpoints_listed(log_path, rest_client, set())


def test_rubric_graded_arithmetic(cookbook_server, workdir, rest_client):
    # the recipe's data generator writes to tinker_cookbook/example_data/ under the working directory
    (workdir / "tinker_cookbook" / "example_data").mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "tinker_cookbook.recipes.rubric.generate_data"],
        cwd=workdir, check=True, capture_output=True, timeout=120,
    )
    # the grader is the served model too; loss_fn as for math_rl
    log_path = run_recipe(
        cookbook_server, workdir, "tinker_cookbook.recipes.rubric.train",
        f"base_url={cookbook_server.base_url}", f"model_name={POLICY_MODEL}",
        "renderer_name=qwen3_disable_thinking", f"grader_llm_name={POLICY_MODEL}",
        "grader_renderer_name=qwen3_disable_thinking", "loss_fn=importance_sampling",
        "groups_per_batch=2", "train_group_size=2", "max_tokens=8", "lora_rank=4", "max_steps=1",
        "eval_every=0", "save_every=0", "behavior_if_log_dir_exists=delete",
    )
    records = assert_rl_steps(log_path, 1)
    assert "env/all/rubric_score" in records[0]
    assert_checkpoints_listed(log_path, rest_client, set())
