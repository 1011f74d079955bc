"""Pooled PostgreSQL connections: the settings, and Django's pool under many threads on the
machine's real PostgreSQL (in a child process: this process's settings are loaded once)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[3]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _settings_in_child(env: dict[str, str], code: str) -> str:
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "MEDCHAIN_"))},
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PYTHONPATH": str(ROOT),
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django\ndjango.setup()\n" + code],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


DATABASE = "from django.conf import settings; import json; print(json.dumps(settings.DATABASES))"


def test_it_pools_postgresql_connections_with_the_sizes_from_the_environment(tmp_path):
    env = {
        "DATABASE_URL": "postgresql://portal@db.example:5432/medchain",
        "DATABASE_POOL_MIN_SIZE": "2",
        "DATABASE_POOL_MAX_SIZE": "6",
        "DATABASE_POOL_TIMEOUT": "5",
        "MEDCHAIN_VAR_DIR": str(tmp_path),
    }
    default = json.loads(_settings_in_child(env, DATABASE))["default"]
    assert default["OPTIONS"]["pool"] == {"min_size": 2, "max_size": 6, "timeout": 5.0}
    assert default["CONN_MAX_AGE"] == 0


def test_it_turns_pooling_off_at_max_size_zero_and_never_pools_sqlite(tmp_path):
    off = {
        "DATABASE_URL": "postgresql://portal@db.example:5432/medchain",
        "DATABASE_POOL_MAX_SIZE": "0",
        "MEDCHAIN_VAR_DIR": str(tmp_path),
    }
    assert "pool" not in json.loads(_settings_in_child(off, DATABASE))["default"]["OPTIONS"]
    sqlite = {"MEDCHAIN_VAR_DIR": str(tmp_path)}
    assert "pool" not in json.loads(_settings_in_child(sqlite, DATABASE))["default"]["OPTIONS"]


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"medchain_pool_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# 24 threads at once, each as a request under ASGI: one query that holds its connection for
# 0.2 s while it counts the process's connections, then the close at request_finished.
THREADS_AT_ONCE = """
import threading, time
from django.db import connection
barrier = threading.Barrier(24)
seen, errors = [], []
def request():
    barrier.wait()
    try:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity, pg_sleep(0.2)"
                " WHERE datname = current_database() AND application_name = 'pool-test'"
            )
            seen.append(cur.fetchone()[0])
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connection.close()
started = time.monotonic()
threads = [threading.Thread(target=request) for _ in range(24)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"seen": seen, "errors": errors, "s": time.monotonic() - started}))
"""


def test_it_holds_many_threads_to_the_pool_size_on_postgresql(pg_url, tmp_path):
    env = {
        "DATABASE_URL": pg_url,
        "DATABASE_POOL_MAX_SIZE": "3",
        "MEDCHAIN_VAR_DIR": str(tmp_path),
        "PGAPPNAME": "pool-test",
    }
    out = json.loads(_settings_in_child(env, "import json\n" + THREADS_AT_ONCE))
    assert out["errors"] == []
    assert len(out["seen"]) == 24
    assert max(out["seen"]) <= 3
    assert out["s"] >= 24 / 3 * 0.2 * 0.9  # they queued for the three connections
