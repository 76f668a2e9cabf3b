"""What both benchmarks need to reach PostgreSQL and the loopback: one place for it."""

from __future__ import annotations

import socket

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"


def db_url(name: str) -> str:
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def admin_sql(sql: str) -> None:
    """Run one statement on the `postgres` database (CREATE/DROP DATABASE need autocommit)."""
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(sql)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
