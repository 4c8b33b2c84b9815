"""Alembic environment for the release store.

Programmatic use (``pipeline.store.migrate``) hands over an open ``Connection`` in
``config.attributes["connection"]`` and owns the transaction. For the ``alembic`` command (writing a
new revision: ``alembic -c pipeline/store/alembic.ini -x url=sqlite:///scratch.db upgrade head``,
then ``revision --autogenerate -m "..."``) the URL comes from ``-x url=...`` or
``config.attributes["url"]``. Logging is left as the caller set it up.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from pipeline.store.sql import make_engine
from pipeline.store.tables import VERSION_TABLE, metadata

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,  # SQLite cannot ALTER most things: later revisions copy the table
        compare_type=True,
    )


def run_migrations_offline() -> None:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise RuntimeError("no database: pass -x url=<database url>")
    context.configure(url=url, target_metadata=metadata, version_table=VERSION_TABLE, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise RuntimeError("no database: pass -x url=<database url>")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
