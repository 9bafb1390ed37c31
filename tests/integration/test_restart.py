"""Acknowledged checkpoints survive a server restart: listed, loadable, sampleable."""

import numpy as np
import tinker
from tinker import types

from sdk_helpers import API_KEY
from gateway.local_server import AnvilServer
from sdk_helpers import TINY, logprobs_of, sft_datum


def test_checkpoints_survive_a_restart(tmp_path):
    tokens = list(range(10, 30))
    data = [sft_datum(tokens)]
    with AnvilServer(tmp_path) as server:
        service = tinker.ServiceClient(base_url=server.base_url, api_key=API_KEY)
        trainer = service.create_lora_training_client(base_model=TINY, rank=4, seed=0).result()
        trainer.forward_backward(data, "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=1e-2)).result()
        state = trainer.save_state("before-restart").result().path
        sampler_path = trainer.save_weights_for_sampler("before-restart").result().path
        expected = logprobs_of(trainer.forward(data, "cross_entropy").result())[0]
        model_id = trainer.model_id
        service.close("success").result()

    with AnvilServer(tmp_path) as server:
        service = tinker.ServiceClient(base_url=server.base_url, api_key=API_KEY)
        rest = tinker.RestClient(base_url=server.base_url, api_key=API_KEY)
        listed = {c.tinker_path for c in rest.list_checkpoints(model_id).result().checkpoints}
        assert listed == {state, sampler_path}
        resumed = service.create_training_client_from_state_with_optimizer(state).result()
        np.testing.assert_allclose(logprobs_of(resumed.forward(data, "cross_entropy").result())[0], expected, atol=1e-6)
        sampler = service.create_sampling_client(model_path=sampler_path).result()
        computed = sampler.compute_logprobs(types.ModelInput.from_ints(tokens)).result()
        np.testing.assert_allclose(computed[1:], expected, atol=1e-4)
        service.close("success").result()
