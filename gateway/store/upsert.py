"""Insert-or-replace and insert-or-ignore, in each database's own syntax where it has one."""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

_DIALECT_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def insert_or_replace(connection: sa.Connection, table: sa.Table, values: dict) -> None:
    keys = [column.name for column in table.primary_key]
    insert = _DIALECT_INSERTS.get(connection.dialect.name)
    if insert is None:
        # any other database: the same outcome in two statements of one transaction
        connection.execute(sa.delete(table).where(*(table.c[k] == values[k] for k in keys)))
        connection.execute(sa.insert(table).values(values))
        return
    changed = {name: value for name, value in values.items() if name not in keys}
    connection.execute(insert(table).values(values).on_conflict_do_update(index_elements=keys, set_=changed))


def insert_or_ignore(connection: sa.Connection, table: sa.Table, values: dict) -> bool:
    """Insert `values` unless a row with their primary key exists; True if inserted."""
    keys = [column.name for column in table.primary_key]
    insert = _DIALECT_INSERTS.get(connection.dialect.name)
    if insert is None:
        found = connection.execute(sa.select(*table.primary_key).where(*(table.c[k] == values[k] for k in keys)))
        if found.first() is not None:
            return False
        connection.execute(sa.insert(table).values(values))
        return True
    return connection.execute(insert(table).values(values).on_conflict_do_nothing(index_elements=keys)).rowcount == 1
