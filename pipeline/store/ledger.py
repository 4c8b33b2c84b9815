"""The events' hash chain in SQL: appending events under the lock of the chain's head, and reading
the head and the chain (the hashing itself, pure, is in ``chain``).

Appends are serialised across processes by the one ``chain_head`` row, locked in the appending
transaction until it ends: ``SELECT ... FOR UPDATE`` on PostgreSQL (a second appender waits there,
then reads the head the first one left); on SQLite, which lets one writer at a time, a no-op
``UPDATE ... RETURNING`` of the row, which takes the database's write lock (if the transaction does
not hold it yet: a transaction that began with a read would not) before it reads. The new events
take the ids after the head's, so the chain's order is the id order, without gaps.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update
from sqlalchemy import exc as sa_exc

from pipeline.errors import Permanent
from pipeline.ports import ChainHead, ChainPage
from pipeline.store import chain
from pipeline.store.tables import CHAIN_HEAD_ROW, as_utc
from pipeline.store.tables import chain_head as head_table
from pipeline.store.tables import events as event_table

SERVICE = "store"
NO_HEAD = "the store has no chain_head row: it was removed by hand"


def append(conn: Connection, rows: list[dict[str, Any]]) -> tuple[ChainHead, ...]:
    """Link new ``events`` rows (without ``id``) into the chain and insert them, in ``conn``'s
    transaction; the chain's head after each. One locking read and one update of the head, whatever
    the number of rows; nothing at all for none. Permanent when the next id is taken by a row the
    store never chained (written behind its back)."""
    if not rows:
        return ()
    heads = chain.link(lock_head(conn), rows)
    try:
        conn.execute(insert(event_table), rows)
    except sa_exc.IntegrityError as exc:
        found = (str(getattr(exc, "orig", exc)).strip().splitlines() or [""])[0]
        if "pk_events" in found or "events.id" in found:
            raise Permanent(
                SERVICE,
                f"event id {rows[0]['id']} is taken by a row the store did not chain: someone wrote into "
                "the history behind its back (`pipeline audit verify` names the row)",
                evidence=found[:300],
            ) from exc
        raise
    last = heads[-1]
    conn.execute(
        update(head_table)
        .where(head_table.c.id == CHAIN_HEAD_ROW)
        .values(events=last.events, event_id=last.event_id, hash=last.hash)
    )
    return heads


def lock_head(conn: Connection) -> ChainHead:
    """The chain's head, locked until ``conn``'s transaction ends (see the module's docstring)."""
    columns = (head_table.c.events, head_table.c.event_id, head_table.c.hash)
    query: Any
    if conn.dialect.name == "sqlite":
        query = (
            update(head_table)
            .where(head_table.c.id == CHAIN_HEAD_ROW)
            .values(events=head_table.c.events)
            .returning(*columns)
        )
    else:
        query = select(*columns).where(head_table.c.id == CHAIN_HEAD_ROW).with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise Permanent(SERVICE, NO_HEAD)
    return chain.head_from_row(row)


def read_head(conn: Connection) -> ChainHead:
    """The chain's head as committed now."""
    row = conn.execute(select(head_table).where(head_table.c.id == CHAIN_HEAD_ROW)).mappings().first()
    if row is None:
        raise Permanent(SERVICE, NO_HEAD)
    return chain.head_from_row(row)


def read_page(conn: Connection, after: int, limit: int, since: datetime | None) -> ChainPage:
    """At most ``limit`` events with an id above ``after`` (``since``: at that time or later), in id
    order, with the chain's head: one statement (the head left-joined to the events), so one
    snapshot on either database: the head read with the last page says where the events read end."""
    joined = and_(event_table.c.id > after, *([event_table.c.at >= as_utc(since)] if since else []))
    query = (
        select(
            head_table.c.events.label("head_events"),
            head_table.c.event_id.label("head_event_id"),
            head_table.c.hash.label("head_hash"),
            *event_table.c,
        )
        .select_from(head_table.outerjoin(event_table, joined))
        .where(head_table.c.id == CHAIN_HEAD_ROW)
        .order_by(event_table.c.id)
        .limit(max(limit, 1))
    )
    rows = conn.execute(query).mappings().all()
    if not rows:
        raise Permanent(SERVICE, NO_HEAD)
    first = rows[0]
    head = chain.head_from_row(
        {"events": first["head_events"], "event_id": first["head_event_id"], "hash": first["head_hash"]}
    )
    return ChainPage(head, tuple(chain.link_from_row(row) for row in rows if row["id"] is not None))
