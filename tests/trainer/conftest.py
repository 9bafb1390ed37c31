import pytest

from anvil.base_models import BaseModelRegistry


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> BaseModelRegistry:
    return BaseModelRegistry(tmp_path_factory.mktemp("models"))
