"""Opening the store refuses what it cannot run on, with a ``Permanent`` error saying what to do: a
database a newer controller migrated (at a revision this version does not know), another kind of
database, a malformed URL. Nothing is changed in a refused database."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from pipeline.errors import Permanent
from pipeline.store import migrate, open_store
from pipeline.store.sql import make_engine
from pipeline.store.tables import VERSION_TABLE

FUTURE = "9f1c2b3a4d5e_a_newer_controller"


def move_to_revision(url: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = :revision"), {"revision": revision})
    finally:
        engine.dispose()


def revision_of(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))]
    finally:
        engine.dispose()


def newest_revision() -> str:
    from alembic.script import ScriptDirectory

    from pipeline.store import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def test_a_store_at_an_unknown_revision_is_refused_saying_what_to_do(store_url: str) -> None:
    open_store(store_url).close()
    move_to_revision(store_url, FUTURE)
    with pytest.raises(Permanent) as caught:
        open_store(store_url)
    message = str(caught.value)
    assert message.startswith("store: the store at ")
    assert message.endswith(
        f"is at revision {FUTURE}, which this version does not know (it knows up to "
        f"{newest_revision()}): upgrade the controller or point PIPELINE_DATABASE_URL elsewhere"
    )
    assert revision_of(store_url) == [FUTURE]  # nothing was changed


def test_migrate_refuses_it_too(store_url: str) -> None:
    open_store(store_url).close()
    move_to_revision(store_url, "future\nrevision")  # shown on one line, whatever it holds
    engine = make_engine(store_url)
    try:
        with pytest.raises(Permanent, match=r"is at revision future\?revision, which this version does not"):
            migrate(engine)
    finally:
        engine.dispose()


def test_the_password_is_hidden_in_the_refusal() -> None:
    with pytest.raises(Permanent) as caught:
        open_store("mysql://deploy:s3cret-pw@db.internal/pipeline")
    assert str(caught.value) == (
        "store: cannot open the store at mysql://deploy:***@db.internal/pipeline: the store is SQLite "
        "(sqlite://) or PostgreSQL (postgresql://, through psycopg 3)"
    )


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "postgresql+psycopg2://u@h/db", "oracle://u@h/db", "SQLite:///x.db"]
)
def test_another_kind_of_database_is_refused(url: str) -> None:
    with pytest.raises(Permanent, match=r"the store is SQLite \(sqlite://\) or PostgreSQL"):
        open_store(url)


@pytest.mark.parametrize(
    "url", ["not a url", "postgresql://u:pw@db:port/x", "postgresql://[::1/x", "://nothing"]
)
def test_a_malformed_url_is_refused(url: str) -> None:
    with pytest.raises(Permanent) as caught:
        open_store(url)
    assert "pw" not in str(caught.value)
    assert "its URL is malformed; expected sqlite:////abs/path/pipeline.db or" in str(caught.value)
