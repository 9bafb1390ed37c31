import os

import pytest

from postgres_cluster import PostgresCluster, postgres_bindir

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_cluster():
    bindir = postgres_bindir()
    if bindir is None:
        message = "PostgreSQL's initdb and pg_ctl are not installed (Debian: apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    cluster = PostgresCluster(bindir)
    yield cluster
    cluster.stop()


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path) -> str:
    """An empty database of each backend: a SQLite file, a new database in the test cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.sqlite'}"
    return request.getfixturevalue("postgres_cluster").new_database()
