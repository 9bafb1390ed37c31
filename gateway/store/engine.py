"""The database: which one (a SQLAlchemy URL, SQLite in the data dir by default), its engine with
the settings it needs, and its schema brought up to date by the migrations at every open."""

import os
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# the file name the first releases used, so an existing data dir keeps its metadata
SQLITE_FILE = "metadata.sqlite"
# the revision whose schema the first releases created without migrations
LEGACY_REVISION = "0001"


def database_url(data_dir: Path, url: str | None = None) -> str:
    """`url`, else $ANVIL_DATABASE_URL, else a SQLite file in `data_dir`."""
    url = url or os.environ.get("ANVIL_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{Path(data_dir).expanduser().resolve() / SQLITE_FILE}"


def open_engine(url: str) -> sa.Engine:
    """An engine on `url` whose schema is at the newest revision."""
    parsed = sa.make_url(url)
    if parsed.drivername == "postgresql":
        # the driver anvil installs (psycopg 3); plain postgresql:// would mean psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed)
    else:
        engine = sa.create_engine(parsed, pool_pre_ping=True)
    upgrade(engine)
    return engine


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # writers from several threads wait for each other's commits instead of failing at once
    engine = sa.create_engine(url, connect_args={"timeout": 30.0})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        # WAL: readers do not wait for the writer; FULL: a commit is on disk when it returns,
        # since a listed checkpoint row must survive a power cut as its files do
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def upgrade(engine: sa.Engine) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        tables = set(sa.inspect(connection).get_table_names())
        if "sessions" in tables and "alembic_version" not in tables:
            # a database the first releases made: its tables are revision 0001's
            command.stamp(config, LEGACY_REVISION)
        command.upgrade(config, "head")
