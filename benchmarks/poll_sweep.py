"""Benchmark 2: the poll sweep with 100, 1,000 and 10,000 pending identifications.

Each customer has one identification in flight (Iron's rule, and the app's constraint) and
two older decided ones, so Iron lists three per customer; N pending identifications are N
customers and 3N identifications, made with ``bulk_create`` here and added to a fake Iron
(in-process HTTP server) with the same ids. Every pending identification is due.

Per sweep (``services.poll_due_identifications``, batches of ``IRON_KYC_POLL_BATCH_SIZE``):
wall time, Iron calls (the fake's request log), database queries (``CaptureQueriesContext``)
and their number per batch, and peak Python memory (``tracemalloc``, in a second sweep
over the same rows). Two situations: nothing changed at Iron, and 10% decided at Iron
since the last look (applied, signalled, customer fetched again).

Baseline, in the same run: the same number of list calls made straight with
``IronClient`` (no database): the HTTP floor a sweep cannot go below.

Targets: one list call per customer per page, queries per batch constant, memory flat.

Run from the repository root: ``python -m benchmarks.poll_sweep``.
"""

from __future__ import annotations

import argparse
import math
import time
import tracemalloc
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from benchmarks.common import bulk_pending, command_line, header, setup_django, table

LIST_PATH = r"^/api/customers/[^/]+/identifications$"
CUSTOMER_PATH = r"^/api/customers/[^/]+$"


def mirror_at_iron(fake: Any, pending: Sequence[Any]) -> None:
    """Give the fake Iron the same customers and identifications as the database."""
    from django_iron_kyc.models import Identification
    from django_iron_kyc.testing.fake import iron_time

    by_customer: dict[int, list[Any]] = {}
    rows = Identification.objects.filter(customer__in={p.customer_id for p in pending})
    for row in rows.select_related("customer").order_by("created_at", "pk"):
        by_customer.setdefault(row.customer_id, []).append(row)
    for rows_of_customer in by_customer.values():
        customer = rows_of_customer[0].customer
        fake.add_customer(id=str(customer.iron_id), email=customer.email)
        for row in rows_of_customer:
            fake.add_identification(
                customer.iron_id,
                status=row.status,
                id=str(row.iron_id),
                url=row.url,
                created_at=iron_time(row.iron_created_at),
                updated_at=iron_time(row.iron_updated_at),
            )


def make_due(limit: int | None = None) -> None:
    from django.utils import timezone

    from django_iron_kyc.models import Identification

    pending = Identification.objects.pending()
    if limit is not None:
        pending = Identification.objects.filter(
            pk__in=list(pending.values_list("pk", flat=True)[:limit])
        )
    pending.update(next_poll_at=timezone.now() - timedelta(seconds=1), poll_count=0)


class CallCounter:
    """The fake's ``on_request``: counts Iron calls by kind and keeps no request log.

    The fake runs in this process; its request log would grow with every call and show up
    in the sweep's memory, so it is emptied as the calls are counted.
    """

    def __init__(self) -> None:
        self.fake: Any = None
        self.reset()

    def reset(self) -> None:
        self.calls = self.list_calls = self.customer_calls = 0

    def __call__(self, record: Any) -> None:
        self.calls += 1
        if record.method == "GET" and record.path.endswith("/identifications"):
            self.list_calls += 1
        elif record.method == "GET" and record.path.startswith("/api/customers/"):
            self.customer_calls += 1
        self.fake.requests.clear()


class QueryCounter:
    """An execute wrapper counting queries (keeps none of them, unlike the query log)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


def sweep(calls: CallCounter, *, memory: bool, limit: int | None = None) -> dict[str, Any]:
    """One sweep: time, Iron calls, queries (or peak memory)."""
    from django.db import connection

    from django_iron_kyc import services

    make_due(limit)
    calls.reset()
    if memory:
        tracemalloc.start()
        started = time.perf_counter()
        result = services.poll_due_identifications()
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        queries = None
    else:
        peak = None
        counter = QueryCounter()
        with connection.execute_wrapper(counter):
            started = time.perf_counter()
            result = services.poll_due_identifications()
            seconds = time.perf_counter() - started
        queries = counter.count
    return {
        "result": result,
        "seconds": seconds,
        "queries": queries,
        "peak": peak,
        "list_calls": calls.list_calls,
        "customer_calls": calls.customer_calls,
        "calls": calls.calls,
    }


def baseline(fake: Any, customers: Sequence[Any]) -> float:
    """The same list calls, straight through the client: seconds."""
    from django_iron_kyc.client import IronClient

    started = time.perf_counter()
    with IronClient() as client:
        for iron_id in customers:
            list(client.iter_identifications(iron_id))
    return time.perf_counter() - started


def run(size: int, batch: int) -> list[list[Any]]:
    from django.db import connection
    from django.test import override_settings

    from django_iron_kyc.models import Identification
    from django_iron_kyc.testing import FakeIron

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE iron_kyc_webhookdelivery, iron_kyc_identification, iron_kyc_customer"
        )
    pending = bulk_pending(size, older_per_customer=2)
    rows: list[list[Any]] = []
    calls = CallCounter()
    with FakeIron(api_key="bench-api-key", on_request=calls) as fake:
        calls.fake = fake
        mirror_at_iron(fake, pending)
        with override_settings(IRON_KYC_BASE_URL=fake.base_url, IRON_KYC_POLL_BATCH_SIZE=batch):
            customer_ids = [p.customer.iron_id for p in pending]
            floor = baseline(fake, customer_ids)
            batches = math.ceil(size / batch)

            sweep(calls, memory=False, limit=20)  # warm up: connections, caches
            quiet = sweep(calls, memory=False)
            quiet_memory = sweep(calls, memory=True)
            decided = pending[::10]
            for row in decided:
                fake.set_identification_status(row.iron_id, "Approved", notify=False)
            busy = sweep(calls, memory=False)
            assert Identification.objects.filter(status="Approved").count() == len(decided)
            for label, figures, memory in (
                ("nothing changed", quiet, quiet_memory),
                (f"{len(decided)} decided", busy, None),
            ):
                polled = figures["result"].polled
                assert polled == size, (polled, size)
                rows.append(
                    [
                        size,
                        label,
                        f"{figures['seconds']:.2f}",
                        f"{floor:.2f}",
                        f"{figures['list_calls']} ({figures['list_calls'] / size:.2f}/customer)",
                        figures["customer_calls"],
                        figures["queries"],
                        f"{figures['queries'] / batches:.1f}",
                        f"{memory['peak'] / 2**20:.2f}" if memory else "",
                    ]
                )
                print(f"   {size} pending, {label}: {figures['seconds']:.1f}s", flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--batch", type=int, default=100, help="IRON_KYC_POLL_BATCH_SIZE")
    args = parser.parse_args(argv)

    setup_django()
    header("Poll sweep: Iron calls, queries and memory per sweep")
    rows: list[list[Any]] = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows += run(size, args.batch)
    print()
    print(
        table(
            rows,
            [
                "pending",
                "at Iron since last sweep",
                "sweep s",
                "baseline s (list calls only)",
                "list calls",
                "customer GETs",
                "queries",
                f"queries per batch of {args.batch}",
                "peak MiB",
            ],
        )
    )
    print(f"\nreproduce: {command_line()}")


if __name__ == "__main__":
    main()
