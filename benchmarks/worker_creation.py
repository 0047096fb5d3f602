"""Benchmark 3: creating identifications through a real Celery worker, end to end.

A Celery worker process (``celery -A benchmarks.celery_app worker``, prefork) consumes from
Redis (database 7); PostgreSQL holds the rows; a fake Iron runs in this process. For M
customers, ``services.start_identification`` records the intent and enqueues the task on
commit; the worker POSTs to Iron and stores the answer. The clock runs from the first
``start_identification`` until every identification is Pending with its hosted URL
stored. Figures: identifications per second end to end, latency per identification (row
created to answer stored, from the rows' own timestamps), and Iron calls per
identification (target: exactly one POST on the happy path, nothing else).

Baseline, in the same run and against the same fake: ``IronClient.create_identification``
called directly (no database, no broker) from as many threads as the worker has
processes, for M other customers.

Run from the repository root: ``python -m benchmarks.worker_creation``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ROOT,
    bulk_customers,
    command_line,
    header,
    percentile,
    setup_django,
    table,
)

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/7")
CREATE_PATH = "/identifications/v2"


def customers(fake: Any, count: int) -> list[Any]:
    """``count`` customers known here and at the fake Iron, with nothing in flight."""
    rows = bulk_customers(count)
    for row in rows:
        fake.add_customer(id=str(row.iron_id), email=row.email)
    return rows


def start_worker(fake: Any, queue: str, concurrency: int, log: Any) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.worker_settings",
        "BENCH_BROKER_URL": BROKER_URL,
        "BENCH_QUEUE": queue,
        "IRON_KYC_BASE_URL": fake.base_url,
    }
    return subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "benchmarks.celery_app", "worker",
            "--pool=prefork", f"--concurrency={concurrency}", "-Q", queue,
            "--without-gossip", "--without-mingle", "--loglevel=WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_until_pending(pks: Sequence[int], timeout: float) -> float:
    """Seconds until every identification is Pending with its URL (polled every 20 ms)."""
    from django_iron_kyc.models import Identification

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = Identification.objects.filter(pk__in=pks, status="Pending").exclude(url="")
        if done.count() == len(pks):
            return time.perf_counter()
        time.sleep(0.02)
    raise SystemExit(f"not all {len(pks)} identifications were created in {timeout}s")


def through_worker(batch: Sequence[Any]) -> tuple[list[int], float, float]:
    """Start an identification for each customer; the pks, the start and the enqueue time."""
    from django_iron_kyc import services

    started = time.perf_counter()
    pks = [services.start_identification(customer).pk for customer in batch]
    return pks, started, time.perf_counter() - started


def direct(fake: Any, batch: Sequence[Any], threads: int) -> float:
    """The baseline: direct create calls, ``threads`` at a time; seconds."""
    from django_iron_kyc.client import IronClient

    chunks = [batch[i::threads] for i in range(threads)]

    def run(chunk: Sequence[Any]) -> None:
        with IronClient() as client:
            for customer in chunk:
                client.create_identification(customer.iron_id, idempotency_key=uuid.uuid4())

    workers = [threading.Thread(target=run, args=(chunk,)) for chunk in chunks]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="identifications per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)

    setup_django()
    import redis
    from celery import Celery, current_app
    from django.test import override_settings

    from django_iron_kyc.models import Identification
    from django_iron_kyc.testing import FakeIron

    header("Creation through a real Celery worker (Redis + PostgreSQL) vs direct client calls")
    queue = f"iron-kyc-bench-{uuid.uuid4().hex[:8]}"
    producer = Celery("iron_kyc_bench_producer", set_as_current=False)
    producer.conf.update(broker_url=BROKER_URL, task_always_eager=False, task_default_queue=queue)
    broker = redis.Redis.from_url(BROKER_URL)
    log_path = Path(tempfile.gettempdir()) / f"{queue}.log"
    previous_app = current_app._get_current_object()
    rows: list[list[Any]] = []
    with (
        FakeIron(api_key="bench-api-key") as fake,
        override_settings(IRON_KYC_BASE_URL=fake.base_url),
        log_path.open("wb") as log,
    ):
        worker = start_worker(fake, queue, args.concurrency, log)
        producer.set_current()
        try:
            warm = customers(fake, 20)
            pks, _, _ = through_worker(warm)
            wait_until_pending(pks, args.timeout)  # the worker is up and warm
            for round_ in range(1, args.rounds + 1):
                batch = customers(fake, args.count)
                requests_before = len(fake.requests)
                pks, started, enqueue_seconds = through_worker(batch)
                finished = wait_until_pending(pks, args.timeout)
                seconds = finished - started
                calls = fake.requests[requests_before:]
                posts = [r for r in calls if r.method == "POST" and r.path.endswith(CREATE_PATH)]
                created = Identification.objects.filter(pk__in=pks)
                latencies = [
                    (row.updated_at - row.created_at).total_seconds()
                    for row in created.only("created_at", "updated_at")
                ]
                assert len({str(r.iron_id) for r in created}) == args.count
                assert all(str(r.iron_id) in fake.identifications for r in created)
                rows.append(
                    [
                        f"worker ({args.concurrency} processes)",
                        round_,
                        args.count,
                        f"{seconds:.2f}",
                        f"{args.count / seconds:.0f}",
                        f"{percentile(latencies, 50) * 1000:.0f}",
                        f"{percentile(latencies, 99) * 1000:.0f}",
                        f"{len(posts) / args.count:.2f}",
                        f"{(len(calls) - len(posts)) / args.count:.2f}",
                        sum(1 for r in posts if r.replayed),
                    ]
                )
                print(
                    f"   round {round_}: worker {args.count} in {seconds:.1f}s "
                    f"(enqueueing took {enqueue_seconds:.1f}s)",
                    flush=True,
                )
                baseline_batch = customers(fake, args.count)
                requests_before = len(fake.requests)
                direct_seconds = direct(fake, baseline_batch, args.concurrency)
                direct_calls = len(fake.requests) - requests_before
                rows.append(
                    [
                        f"direct client calls ({args.concurrency} threads)",
                        round_,
                        args.count,
                        f"{direct_seconds:.2f}",
                        f"{args.count / direct_seconds:.0f}",
                        "",
                        "",
                        f"{direct_calls / args.count:.2f}",
                        "0.00",
                        0,
                    ]
                )
        finally:
            previous_app.set_current()
            worker.terminate()
            worker.wait(60)
            broker.delete(queue)
            producer.close()
    print()
    print(
        table(
            rows,
            [
                "path",
                "round",
                "identifications",
                "s",
                "per s",
                "p50 ms",
                "p99 ms",
                "POSTs per identification",
                "other Iron calls per identification",
                "replayed POSTs",
            ],
        )
    )
    worker_rates = [float(r[4]) for r in rows if r[0].startswith("worker")]
    direct_rates = [float(r[4]) for r in rows if r[0].startswith("direct")]
    print(
        f"\nbest round: worker {max(worker_rates):.0f}/s end to end, direct calls "
        f"{max(direct_rates):.0f}/s (ratio {max(worker_rates) / max(direct_rates):.2f})"
    )
    print(f"worker log: {log_path}")
    print(f"\nreproduce: {command_line()}")


if __name__ == "__main__":
    main()
