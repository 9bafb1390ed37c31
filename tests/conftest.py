import json
import os

import pytest

from sdk_helpers import ALIAS_MODEL, API_KEY, SAMPLER_ENGINE

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TINKER_TELEMETRY", "0")
# float32 unless a test asks for bf16: most tests check exact equalities (tests/sdk_helpers.py
# holds the bf16 tolerances of the parity tests that run at both precisions)
os.environ.setdefault("ANVIL_PRECISION", "fp32")



@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL cluster (tests/postgres_cluster.py). Without PostgreSQL's binaries
    its tests fail under CI (which installs them: .ci/run) and are skipped elsewhere."""
    from postgres_cluster import PostgresCluster, postgres_bindir

    bindir = postgres_bindir()
    if bindir is None:
        message = "PostgreSQL's initdb and pg_ctl are not installed (Debian: apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    cluster = PostgresCluster(bindir)
    yield cluster
    cluster.stop()


def _cluster_args(data_dir) -> list[str]:
    """ANVIL_TEST_CLUSTER=ray: the shared servers run on a local Ray runtime, one trainer worker and
    two sampler actors per base model, the trainer worker spanning ANVIL_TEST_TRAINER_SHARDS actors
    (default 1; tests/integration/test_ray_cluster.py runs suites so)."""
    if os.environ.get("ANVIL_TEST_CLUSTER") != "ray":
        return []
    shards = int(os.environ.get("ANVIL_TEST_TRAINER_SHARDS", "1"))
    placement = data_dir / "placement.json"
    placement.write_text(json.dumps({"default": {"trainers": 1, "samplers": 2, "shards": shards}}))
    return ["--cluster", "ray", "--placement", str(placement)]


def _start_server(tmp_path_factory, precision: str):
    from gateway.local_server import AnvilServer, tiny_model_folder

    data_dir = tmp_path_factory.mktemp(f"anvil-data-{precision}")
    server = AnvilServer(
        data_dir,
        extra_models={ALIAS_MODEL: tiny_model_folder(data_dir)},
        # the whole suite is one user (one key) and opens hundreds of models in one session; the
        # per-user cap is tested on a server of its own (tests/integration/test_lifecycles.py)
        args=["--sampler-engine", SAMPLER_ENGINE, "--precision", precision, "--max-models-per-user", "100000",
              *_cluster_args(data_dir)],
    )
    server.precision = precision
    return server


@pytest.fixture(scope="session")
def anvil_server(tmp_path_factory):
    server = _start_server(tmp_path_factory, "fp32")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bf16_server(tmp_path_factory):
    """A second server at bf16 base precision, for the parity tests that run at both precisions;
    started only when one of them runs."""
    server = _start_server(tmp_path_factory, "bf16")
    yield server
    server.stop()


def _client(server):
    import tinker

    return tinker.ServiceClient(base_url=server.base_url, api_key=API_KEY)


@pytest.fixture(scope="session")
def service_client(anvil_server):
    client = _client(anvil_server)
    yield client
    client.close("success").result()


@pytest.fixture(scope="session")
def bf16_service_client(bf16_server):
    client = _client(bf16_server)
    yield client
    client.close("success").result()


@pytest.fixture
def client_at(request):
    """`client_at(precision)`: the service client of the server running at that precision."""
    return lambda precision: request.getfixturevalue({"fp32": "service_client", "bf16": "bf16_service_client"}[precision])


@pytest.fixture(scope="session")
def rest_client(anvil_server):
    import tinker

    return tinker.RestClient(base_url=anvil_server.base_url, api_key=API_KEY)


@pytest.fixture(scope="session")
def tokenizer(service_client):
    training = service_client.create_lora_training_client(base_model="anvil/tiny-qwen3", rank=4, seed=0).result()
    return training.get_tokenizer()
