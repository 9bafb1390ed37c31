"""kill -9 while a client trains, saves and overwrites checkpoints, at seeded random moments, 20
times: after each restart on the same data dir every listed checkpoint loads and gives the logprobs
it had when saved, every acknowledged save is listed, a future whose answer the client saw just
before the kill is answered the same, and no staging folder is left."""

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest
import tinker
from tinker import types

from anvil.checkpoint_folders import leftovers
from gateway.local_server import AnvilServer
from sdk_helpers import API_KEY, TINY, logprobs_of, sft_datum

ROUNDS = 20
SEED = 9
TOKENS = list(range(10, 30))
DATA = [sft_datum(TOKENS)]
# (kind, name): two training checkpoints and a sampler one, each saved again and again
SAVES = (("weights", "a"), ("weights", "b"), ("sampler_weights", "s"))
# a kill comes this long at most after the first save; a step and a save take ~0.3 s when the
# machine is quiet
KILL_WINDOW_S = 1.5
# a save request is sent, run and answered within this when the machine is quiet
SAVE_WINDOW_S = 0.05
# the torch engine at fp32 against the trainer (tests/integration/test_restart.py)
SAMPLER_ATOL = 1e-4


@dataclass
class Saves:
    """What one client knows of its checkpoints: per tinker path, the logprobs of the last save
    the server acknowledged, and of the save in flight (the server may have listed it before
    the kill without the client hearing back)."""

    acknowledged: dict[str, np.ndarray] = field(default_factory=dict)
    in_flight: dict[str, np.ndarray] = field(default_factory=dict)
    # request id → the answer the client got, of futures finished just before the kill
    finished: dict[str, dict] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    saved_once: threading.Event = field(default_factory=threading.Event)
    saving: threading.Event = field(default_factory=threading.Event)

    def snapshot(self) -> "Saves":
        with self.lock:
            return Saves(dict(self.acknowledged), dict(self.in_flight), dict(self.finished))


@dataclass
class Tally:
    kills_with_a_save_in_flight: int = 0
    listed_at_the_acknowledged_version: int = 0
    listed_at_the_version_in_flight: int = 0
    startup_s: list[float] = field(default_factory=list)


def _train_and_save(service: tinker.ServiceClient, seed: int, saves: Saves) -> None:
    """Train and save until the server dies under it (then this thread is abandoned, blocked in
    the SDK's retries against the dead port, and writes only to this round's `saves`)."""
    try:
        _train_and_save_until_killed(service, seed, saves)
    except tinker.APIConnectionError:
        pass  # the SDK gave up on the killed server


def _train_and_save_until_killed(service: tinker.ServiceClient, seed: int, saves: Saves) -> None:
    rng = random.Random(seed)
    trainer = service.create_lora_training_client(base_model=TINY, rank=4, seed=seed).result()
    while True:
        trainer.forward_backward(DATA, "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=0.05)).result()
        logprobs = logprobs_of(trainer.forward(DATA, "cross_entropy").result())[0]
        kind, name = rng.choice(SAVES)
        path = f"tinker://{trainer.model_id}/{kind}/{name}"
        with saves.lock:
            saves.in_flight[path] = logprobs
        saves.saving.set()
        if kind == "weights":
            saved = trainer.save_state(name, overwrite=True).result()
        else:
            saved = trainer.save_weights_for_sampler(name).result()
        assert saved.path == path
        with saves.lock:
            saves.acknowledged[path] = saves.in_flight.pop(path)
        saves.saved_once.set()


def _logprobs_of_checkpoint(service: tinker.ServiceClient, path: str, kind: str) -> np.ndarray:
    if kind == "training":
        trainer = service.create_training_client_from_state(path).result()
        return logprobs_of(trainer.forward(DATA, "cross_entropy").result())[0]
    sampler = service.create_sampling_client(model_path=path).result()
    return np.asarray(sampler.compute_logprobs(types.ModelInput.from_ints(TOKENS)).result()[1:])


def _check_after_restart(server: AnvilServer, before_kill: Saves, tally: Tally) -> None:
    assert leftovers(server.data_dir) == []
    service = tinker.ServiceClient(base_url=server.base_url, api_key=API_KEY)
    rest = tinker.RestClient(base_url=server.base_url, api_key=API_KEY)
    listed = {c.tinker_path: c.checkpoint_type for c in rest.list_user_checkpoints(limit=1000).result().checkpoints}
    assert set(before_kill.acknowledged) <= set(listed), "an acknowledged save was lost"
    assert set(listed) <= set(before_kill.acknowledged) | set(before_kill.in_flight)
    for path, kind in listed.items():
        loaded = _logprobs_of_checkpoint(service, path, kind)
        atol = 1e-6 if kind == "training" else SAMPLER_ATOL
        acknowledged, in_flight = before_kill.acknowledged.get(path), before_kill.in_flight.get(path)
        if acknowledged is not None and np.allclose(loaded, acknowledged, atol=atol):
            tally.listed_at_the_acknowledged_version += 1
        else:
            assert in_flight is not None, f"{path} loads with logprobs no save of it had"
            np.testing.assert_allclose(loaded, in_flight, atol=atol, err_msg=f"{path} is neither version saved")
            tally.listed_at_the_version_in_flight += 1
    # a future the client saw finish is answered after the restart as before it
    for request_id, seen in before_kill.finished.items():
        answer = _retrieve(server, request_id)
        assert answer.status_code == 200 and answer.json() == seen, (request_id, answer.text)
    # the next round's listing holds that round's checkpoints only
    for path in listed:
        rest.delete_checkpoint_from_tinker_path(path).result()
    assert rest.list_user_checkpoints(limit=1000).result().checkpoints == []


def _retrieve(server: AnvilServer, request_id: str) -> httpx.Response:
    return httpx.post(f"{server.base_url}/api/v1/retrieve_future", json={"request_id": request_id},
                      headers={"X-API-Key": API_KEY}, timeout=60)


def _finish_a_future(server: AnvilServer, saves: Saves) -> None:
    """A request whose answer the client has seen (a create_model, by hand, to know its id),
    recorded for after the restart."""
    headers = {"X-API-Key": API_KEY}
    session = httpx.post(f"{server.base_url}/api/v1/create_session", json={"tags": []}, headers=headers, timeout=60)
    created = httpx.post(f"{server.base_url}/api/v1/create_model", headers=headers, timeout=60, json={
        "session_id": session.json()["session_id"], "model_seq_id": 0, "base_model": TINY, "lora_config": {"rank": 2},
    }).json()
    while (answer := _retrieve(server, created["request_id"])).status_code == 408:
        pass
    assert answer.status_code == 200, answer.text
    with saves.lock:
        saves.finished[created["request_id"]] = answer.json()


@pytest.mark.slow
def test_acknowledged_checkpoints_survive_kill_9_at_random_moments(tmp_path):
    rng = random.Random(SEED)
    tally = Tally()
    before_kill: Saves | None = None
    started = time.monotonic()
    for round_number in range(ROUNDS + 1):
        round_started = time.monotonic()
        server = AnvilServer(tmp_path, args=["--sampler-engine", "torch", "--precision", "fp32"])
        tally.startup_s.append(time.monotonic() - round_started)
        try:
            if before_kill is not None:
                _check_after_restart(server, before_kill, tally)
            if round_number == ROUNDS:
                break
            saves = Saves()
            service = tinker.ServiceClient(base_url=server.base_url, api_key=API_KEY)
            threading.Thread(target=_train_and_save, args=(service, round_number, saves), daemon=True).start()
            # from the first save on (the first steps are slower: the trainer warms up), a kill
            # lands anywhere in a training step, a save or an overwrite; every other round aims
            # at a save, which is over in milliseconds
            assert saves.saved_once.wait(120), "the client could not train and save"
            time.sleep(rng.uniform(0.0, KILL_WINDOW_S))
            _finish_a_future(server, saves)  # just before the kill: its answer must be durable already
            if round_number % 2:
                saves.saving.clear()
                assert saves.saving.wait(30), "the client stopped saving"
                time.sleep(rng.uniform(0.0, SAVE_WINDOW_S))
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait()
            before_kill = saves.snapshot()
            tally.kills_with_a_save_in_flight += bool(before_kill.in_flight)
        finally:
            server.stop()
    print(f"{ROUNDS} kills in {time.monotonic() - started:.0f} s, server start median "
          f"{np.median(tally.startup_s):.1f} s: {tally}")
    assert tally.listed_at_the_acknowledged_version >= ROUNDS, "every round lists what it saved"
