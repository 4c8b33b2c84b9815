"""`make bench`: how fast and how frugal the controller is. Numbers, not assertions.

- decide(): decisions per second over every state (the pure core).
- The store: releases saved with an event per second, on SQLite and (when it answers) PostgreSQL.
- One release through the sandbox, merge to backups_verified: wall time, the controller's requests
  to Bitbucket and Heroku (the rate budgets: 1,000 an hour and 4,500 an hour), and the peak memory
  Python allocated during it.

Run: `make bench` (or `.venv/bin/python tests/bench/bench.py`).
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from e2e_world import write_config  # noqa: E402

from pipeline import bootstrap, config, domain  # noqa: E402
from pipeline.demo import People  # noqa: E402
from pipeline.model import Event, Release, State  # noqa: E402
from pipeline.store import open_store  # noqa: E402
from sandbox.core import Sandbox  # noqa: E402
from sandbox.databases import postgres_available  # noqa: E402

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def bench_decide(seconds: float = 1.0) -> None:
    base = Release("claims", "a" * 40, "develop", State.DETECTED, NOW, NOW, id=1)
    cases = [
        (replace(base, state=s), domain.Observation(build_statuses={"tests": "SUCCESSFUL"})) for s in State
    ]
    policy = domain.Policy(required_builds=("tests",), approvers=frozenset({"po"}))
    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for release, seen in cases:
            domain.decide(release, seen, policy, NOW)
        calls += len(cases)
    rate = calls / (time.perf_counter() - start)
    print(f"decide()                         {rate:>12,.0f} decisions/s")


def bench_store(name: str, url: str, count: int = 300) -> None:
    store = open_store(url)
    try:
        start = time.perf_counter()
        for i in range(count):
            release = store.add(
                Release("bench", f"{i:040x}", "develop", State.DETECTED, NOW, NOW),
                "ReleaseDetected",
                "bench",
                "b",
            )
            assert release.id is not None
            event = Event(
                release.id,
                NOW + timedelta(seconds=1),
                "GatePassed",
                "b",
                "bench",
                State.DETECTED,
                State.GATED,
            )
            store.save(replace(release, state=State.GATED), [event])
        rate = count / (time.perf_counter() - start)
        print(f"store add + save ({name:<10})     {rate:>12,.0f} releases/s")
    finally:
        store.close()


def bench_release() -> None:
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        box = Sandbox(Path(tmp) / "sandbox").start()
        try:
            info = box.info()
            env = dict(info["env"]) | {"PIPELINE_DATABASE_URL": f"sqlite:///{tmp}/pipeline.db"}
            settings = config.load(write_config(Path(tmp) / "config"), env=env)
            services = bootstrap.services(settings)
            people = People(info)
            bitbucket = box.bitbucket.limiter.used("controller")
            heroku = _heroku_remaining(info)
            tracemalloc.start()
            start = time.perf_counter()
            people.merge_change("Bench change", {"BENCH.md": b"bench\n"})
            services.settle(600)
            to_approval = time.perf_counter() - start
            people.approve(user="po")
            services.settle(600)
            total = time.perf_counter() - start
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            state = services.history(1)[0]["state"]
            used_bitbucket = box.bitbucket.limiter.used("controller") - bitbucket
            used_heroku = heroku - _heroku_remaining(info)
            print(f"merge -> awaiting_approval       {to_approval:>12.1f} s")
            print(f"merge -> {state:<24}{total:>12.1f} s (the PO approving at once)")
            print(f"Bitbucket requests, one release  {used_bitbucket:>12} (the controller's account)")
            print(f"Heroku requests, one release     {used_heroku:>12}")
            print(f"peak Python memory in the pass   {peak / 1024 / 1024:>12.1f} MiB")
        finally:
            box.stop()
            if box.databases is not None:
                box.databases.drop_all()


def _heroku_remaining(info: dict[str, object]) -> int:
    hk = info["heroku"]
    assert isinstance(hk, dict)
    answer = requests.get(
        f"{hk['url']}/account/rate-limits",
        headers={
            "Authorization": f"Bearer {hk['api_key']}",
            "Accept": "application/vnd.heroku+json; version=3",
        },
        timeout=10,
    )
    return int(answer.json()["remaining"])


def main() -> None:
    bench_decide()
    with tempfile.TemporaryDirectory() as tmp:
        bench_store("sqlite", f"sqlite:///{tmp}/bench.db")
    if postgres_available():
        import psycopg

        name = f"pipeline_bench_{int(time.time())}"
        admin = "postgresql://postgres@127.0.0.1:5432/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            bench_store("postgresql", f"postgresql://postgres@127.0.0.1:5432/{name}")
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        print("store (postgresql): skipped, no server on 127.0.0.1:5432")
    bench_release()


if __name__ == "__main__":
    main()
