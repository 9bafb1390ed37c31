"""Alembic runs migrations on the connection gateway/store/engine.py hands it (never from a URL
in a config file: the server and `anvil keys` open the database themselves)."""

from alembic import context

from gateway.store.tables import metadata

connection = context.config.attributes["connection"]
# SQLite alters tables by copying them ("batch" mode); other databases alter in place
context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
