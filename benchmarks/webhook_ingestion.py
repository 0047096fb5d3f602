"""Benchmark 1: webhook ingestion over real HTTP, against a bare one-INSERT view.

All run in the same gunicorn (gthread workers, keep-alive), the same Django settings and
middleware, on the same PostgreSQL database, with a Redis broker:

- ``/deferred/webhook/``: the app's view with ``IRON_KYC_WEBHOOK_PROCESSING = "deferred"``.
  Each delivery is a signed ``identification_status`` event moving one existing Pending
  identification to Processed: verified, its shape checked, stored, answered; the drain task
  is sent at most twice a second per process. After the load, the drain
  (``process_received_deliveries``, what the Celery task runs) is timed in this process,
  and every delivery is checked to have been applied.
- ``/iron/webhook/``: the same view, inline (the default): verified, stored, applied (row
  locked, state changed, signal sent), answered.
- ``/baseline/``: a bare Django view that reads the body and does one INSERT.

A threaded Python client on loopback (one keep-alive connection per thread) sends the
load; deliveries are signed before each round starts. In each round the baseline and the
deferred view take turns in slices of ``--slice`` requests (ABBA order), each slice sending
the same bodies to both, so that a change in the machine's speed during the round (a
shared virtual machine drifts by tens of percent over seconds) falls on both alike. The
inline view gets its own phases after all the rounds. Figures per round and target:
deliveries/s, p50 and p99 latency, and the CPU per request of gunicorn, PostgreSQL and the
client; the ratio to the baseline is taken per round and its median reported
(target: the deferred app at least 0.8 of the baseline's throughput). Database queries per
delivery are counted in-process (``CaptureQueriesContext``) on an empty database and again
after the load, to show they do not grow.

Run from the repository root: ``python -m benchmarks.webhook_ingestion``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import pwd
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ROOT,
    bulk_pending,
    command_line,
    header,
    median,
    percentile,
    setup_django,
    table,
)

Request = tuple[bytes, dict[str, str]]

BROKER_URL = "redis://127.0.0.1:6379/7"
TARGETS = (
    ("/baseline/", "baseline (one INSERT)"),
    ("/deferred/webhook/", "app webhook, deferred"),
    ("/iron/webhook/", "app webhook, inline"),
)


CPU_GROUPS = ("gunicorn", "postgres", "client")


def _postgres_uid() -> int | None:
    try:
        return pwd.getpwnam("postgres").pw_uid
    except KeyError:
        return None


POSTGRES_UID = _postgres_uid()


def server_cpu_seconds(server: subprocess.Popen[bytes]) -> dict[str, float]:
    """CPU time (user + system) used so far by gunicorn and by PostgreSQL.

    Read from ``/proc`` (Linux): gunicorn's master and workers, and every process of the
    ``postgres`` user on this machine (backends, WAL writer, checkpointer, autovacuum).
    """
    tick = os.sysconf("SC_CLK_TCK")
    used = {"gunicorn": 0.0, "postgres": 0.0}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            uid = entry.stat().st_uid
        except OSError:
            continue  # gone meanwhile
        pid, parent = int(entry.name), int(stat[1])
        if pid == server.pid or parent == server.pid:
            group = "gunicorn"
        elif uid == POSTGRES_UID:
            group = "postgres"
        else:
            continue
        used[group] += (int(stat[11]) + int(stat[12])) / tick
    return used


@dataclass
class Phase:
    target: str
    round: int
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CPU_GROUPS, 0.0))

    def add(self, other: Phase) -> None:
        """Count ``other`` (a slice of the same target and round) in this phase."""
        self.latencies.extend(other.latencies)
        self.statuses.update(other.statuses)
        self.errors += other.errors
        self.seconds += other.seconds
        for group in CPU_GROUPS:
            self.cpu[group] += other.cpu[group]

    def progress(self) -> str:
        return f"   round {self.round} {self.target}: {self.count} in {self.seconds:.1f}s"

    def cpu_ms(self, group: str) -> float:
        """Milliseconds of CPU per request spent by ``group`` (or by all, for ``"all"``)."""
        spent = sum(self.cpu.values()) if group == "all" else self.cpu[group]
        return spent / self.count * 1000 if self.count else 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def row(self) -> list[Any]:
        return [
            self.target,
            self.round,
            self.count,
            f"{self.seconds:.2f}",
            f"{self.rate:.0f}",
            f"{percentile(self.latencies, 50) * 1000:.1f}",
            f"{percentile(self.latencies, 99) * 1000:.1f}",
            *(f"{self.cpu_ms(group):.3f}" for group in (*CPU_GROUPS, "all")),
            self.errors + sum(n for s, n in self.statuses.items() if s != 200),
        ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(port: int, workers: int, threads: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.settings"}  # with the broker
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "benchmarks.wsgi:application",
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--worker-class", "gthread", "--threads", str(threads),
            "--keep-alive", "30", "--log-level", "warning",
        ],
        cwd=ROOT,
        env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("gunicorn did not start")


def load(
    server: subprocess.Popen[bytes],
    port: int,
    path: str,
    requests: Sequence[Request],
    threads: int,
    seconds: float,
) -> Phase:
    """Send ``requests`` from ``threads`` keep-alive connections; stop when done or late."""
    phase = Phase(path, 0)
    lock = threading.Lock()
    position = iter(range(len(requests)))
    deadline = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies: list[float] = []
        statuses: Counter[int] = Counter()
        errors = 0
        while time.monotonic() < deadline:
            with lock:
                index = next(position, None)
            if index is None:
                break
            body, headers = requests[index]
            started = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                answer = conn.getresponse()
                answer.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            latencies.append(time.perf_counter() - started)
            statuses[answer.status] += 1
        conn.close()
        with lock:
            phase.latencies.extend(latencies)
            phase.statuses.update(statuses)
            phase.errors += errors

    workers = [threading.Thread(target=client) for _ in range(threads)]
    server_before = server_cpu_seconds(server)
    # This process's own CPU, read next to the load alone (not around the /proc scans).
    client_before = time.process_time()
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    phase.seconds = time.perf_counter() - started
    client_seconds = time.process_time() - client_before
    server_after = server_cpu_seconds(server)
    phase.cpu = {group: server_after[group] - server_before[group] for group in server_after}
    phase.cpu["client"] = client_seconds
    return phase


def deliveries(identifications: Sequence[Any]) -> list[Request]:
    """Signed ``identification_status`` deliveries (Pending -> Processed), one each."""
    from django_iron_kyc.conf import iron_settings
    from django_iron_kyc.testing import build_event, encode_event, sign_webhook

    secret = iron_settings.WEBHOOK_SECRETS[0]
    requests = []
    for row in identifications:
        body = encode_event(
            build_event("identification_status", row.customer.iron_id, row.iron_id, "Processed")
        )
        requests.append((body, sign_webhook(body, secret)))
    return requests


def statement(sql: str) -> str:
    """``SELECT identification FOR UPDATE``: what a statement does, in short."""
    verb = "SELECT EXISTS" if sql.startswith("SELECT 1 AS") else sql.split()[0]
    found = re.search(r"iron_kyc_(\w+)", sql)
    lock = " FOR UPDATE" if "FOR UPDATE" in sql else ""
    return f"{verb} {found.group(1) if found else ''}{lock}".replace("  ", " ").strip()


def queries_per_delivery(identifications: Sequence[Any]) -> dict[str, list[int]]:
    """Queries of one delivery, counted in-process through Django's test client."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from django_iron_kyc.webhooks import process_received_deliveries

    client = Client()
    counts: dict[str, list[int]] = {}
    half = len(identifications) // 2
    for label, path, rows in (
        ("deferred", "/deferred/webhook/", identifications[:half]),
        ("inline", "/iron/webhook/", identifications[half:]),
    ):
        sent = deliveries(rows)
        for again in ("new event", "same webhook-id again"):
            kind = f"{label}, {again}"
            counts[kind] = []
            for body, headers in sent:
                with CaptureQueriesContext(connection) as captured:
                    answer = client.post(
                        path, data=body, content_type="application/json", headers=headers
                    )
                assert answer.status_code == 200, answer.content
                counts[kind].append(len(captured))
                if len(counts[kind]) == 1 and again == "new event":
                    print(f"   statements of one delivery ({label}): " + ", ".join(
                        statement(q["sql"]) for q in captured.captured_queries
                    ))  # fmt: skip
        if label == "deferred":
            process_received_deliveries()
    with CaptureQueriesContext(connection) as captured:
        client.post("/baseline/", data=sent[0][0], content_type="application/json")
    counts["baseline"] = [len(captured)]
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=4000, help="per target and round")
    parser.add_argument(
        "--slice", type=int, default=1000, help="requests per turn of baseline and deferred"
    )
    parser.add_argument("--inline-requests", type=int, default=1000, help="per round")
    parser.add_argument("--seconds", type=float, default=20.0, help="at most, per phase")
    parser.add_argument("--warmup", type=int, default=200, help="requests, per phase")
    parser.add_argument("--client-threads", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    args = parser.parse_args(argv)

    # The deferred view sends its drain task to a real broker; nothing consumes it during
    # the load (the drain is timed afterwards, here).
    os.environ["CELERY_BROKER_URL"] = os.environ.get("BENCH_BROKER_URL", BROKER_URL)
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"
    setup_django()
    from django.db import connection

    from benchmarks.celery_app import app as celery_app
    from benchmarks.urls import BASELINE_TABLE
    from django_iron_kyc.models import Identification, WebhookDelivery
    from django_iron_kyc.webhooks import process_received_deliveries

    celery_app.control.purge()

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {BASELINE_TABLE} (id bigserial PRIMARY KEY, body text NOT NULL, "
            "received_at timestamptz NOT NULL)"
        )
    header("Webhook ingestion over HTTP: the app's webhook view vs a bare one-INSERT view")
    per_round = args.requests + args.warmup
    inline_per_round = args.inline_requests + args.warmup
    pending = bulk_pending((per_round + inline_per_round) * args.rounds + 80)
    pending = list(
        Identification.objects.filter(pk__in=[p.pk for p in pending])
        .select_related("customer")
        .order_by("pk")
    )
    queries_before = queries_per_delivery(pending[:40])
    pool = iter(pending[40:-40])
    baseline, deferred, inline = TARGETS

    port = free_port()
    server = start_gunicorn(port, args.workers, args.threads)
    phases: list[Phase] = []

    def send(target: str, requests: Sequence[Request]) -> Phase:
        return load(server, port, target, requests, args.client_threads, args.seconds)

    try:
        for round_ in range(1, args.rounds + 1):
            # The baseline is sent the deferred view's bodies (it only stores them).
            requests = deliveries([next(pool) for _ in range(per_round)])  # signed now
            warmup, measured = requests[: args.warmup], requests[args.warmup :]
            turns = {target: Phase(label, round_) for target, label in (baseline, deferred)}
            for target in turns:
                send(target, warmup)
            for start in range(0, len(measured), args.slice):
                chunk = measured[start : start + args.slice]
                order = (
                    (baseline, deferred)
                    if start // args.slice % 4 in (0, 3)
                    else (deferred, baseline)
                )  # ABBA: neither goes first more often
                for target, _ in order:
                    turns[target].add(send(target, chunk))
            for phase in turns.values():
                phases.append(phase)
                print(phase.progress(), flush=True)
        # The inline view after all of them: its many writes (and the checkpoints and
        # vacuuming they bring about) are not left to land on the rounds above.
        for round_ in range(1, args.rounds + 1):
            requests = deliveries([next(pool) for _ in range(inline_per_round)])
            send(inline[0], requests[: args.warmup])
            phase = send(inline[0], requests[args.warmup :])
            phase.target, phase.round = inline[1], round_
            phases.append(phase)
            print(phase.progress(), flush=True)
    finally:
        server.terminate()
        server.wait(30)
    waiting = WebhookDelivery.objects.filter(outcome="received").count()
    started = time.perf_counter()
    drained = process_received_deliveries(limit=10**9)
    drain_seconds = time.perf_counter() - started
    celery_app.control.purge()
    queries_after = queries_per_delivery(pending[-40:])

    processed = WebhookDelivery.objects.filter(outcome="processed").count()
    left = WebhookDelivery.objects.exclude(outcome="processed").count()
    moved = Identification.objects.filter(status="Processed").count()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {BASELINE_TABLE}")
        stored_baseline = cursor.fetchone()[0]

    print()
    print(
        table(
            [p.row() for p in phases],
            ["target", "round", "requests", "s", "req/s", "p50 ms", "p99 ms"]
            + [f"CPU ms/req: {group}" for group in (*CPU_GROUPS, "all")]
            + ["non-200"],
        )
    )
    rates = {(p.target, p.round): p.rate for p in phases}
    print()
    for target, label in TARGETS:
        rate = median([p.rate for p in phases if p.target == label])
        latencies = [x for p in phases if p.target == label for x in p.latencies]
        cpu = {
            group: median([p.cpu_ms(group) for p in phases if p.target == label])
            for group in (*CPU_GROUPS, "all")
        }
        line = (
            f"{label}: median {rate:.0f}/s, p50 {percentile(latencies, 50) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 99) * 1000:.1f} ms; CPU per request {cpu['all']:.3f} ms ("
            + ", ".join(f"{group} {cpu[group]:.3f}" for group in CPU_GROUPS)
            + ")"
        )
        if target != baseline[0]:
            ratios = [
                rates[label, r] / rates[baseline[1], r]
                for r in range(1, args.rounds + 1)
                if rates[baseline[1], r]
            ]
            ratio = median(ratios)
            line += f"; ratio to the baseline, per round {', '.join(f'{x:.2f}' for x in ratios)}"
            line += f": median {ratio:.2f}"
            if target == deferred[0]:
                line += f" (target >= 0.80: {'met' if ratio >= 0.8 else 'NOT met'})"
            else:
                line += " (acts on each delivery before it answers; no target)"
        print(line)
    drain_rate = waiting / drain_seconds if drain_seconds else 0.0
    print(
        f"deferred drain after the load: {waiting} deliveries waiting, processed in "
        f"{drain_seconds:.1f} s by one process ({drain_rate:.0f}/s): {dict(drained.outcomes)}"
    )
    print(
        f"stored: {processed} deliveries processed, {left} not, and {moved} identifications "
        f"moved (+80 counted in-process); {stored_baseline} baseline rows"
    )
    for label, counts in (("empty tables", queries_before), ("after the load", queries_after)):
        print(
            f"queries per request ({label}): "
            + "; ".join(f"{kind}: {sorted(set(n))}" for kind, n in counts.items())
        )
    print(f"\nreproduce: {command_line()}")


if __name__ == "__main__":
    main()
