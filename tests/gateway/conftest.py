import pytest

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path) -> str:
    """An empty database of each backend: a SQLite file, a new database in the test cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.sqlite'}"
    return request.getfixturevalue("postgres_cluster").new_database()
