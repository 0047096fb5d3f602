"""What the benchmark scripts share: a fresh database, the machine, percentiles, output."""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def setup_django(**environ: str) -> None:
    """Configure Django with ``benchmarks.settings`` on a freshly created database."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    os.environ.update(environ)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    recreate_database()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def recreate_database() -> None:
    """Drop and create the benchmark database (it must not be the test or a real one)."""
    import psycopg
    from django.conf import settings
    from django.db import connections

    params = settings.DATABASES["default"]
    name = params["NAME"]
    if not str(name).startswith(("test_bench", "bench")):
        raise SystemExit(f"refusing to drop database {name!r}: its name must start with test_bench")
    connections.close_all()
    with psycopg.connect(
        host=params.get("HOST") or "127.0.0.1",
        port=params.get("PORT") or 5432,
        user=params.get("USER") or "postgres",
        password=params.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    ) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def machine() -> dict[str, str]:
    """The machine and software versions the figures came from."""
    import django
    from django.db import connection

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "django": django.get_version(),
        "postgresql": postgres,
        "load average at start": load,
    }


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def command_line() -> str:
    """The command that reproduces this run (from the repository root)."""
    module = Path(sys.argv[0]).resolve().relative_to(ROOT).with_suffix("")
    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in os.environ.items() if k.startswith("BENCH_"))
    return " ".join(part for part in (env, "python -m", ".".join(module.parts), args) if part)


def header(title: str) -> None:
    print(f"== {title}")
    for key, value in machine().items():
        print(f"   {key}: {value}")
    print()


def table(rows: Sequence[Sequence[Any]], headings: Sequence[str]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def bulk_customers(count: int, *, when: Any = None) -> list[Any]:
    """``count`` customers known at Iron (rows only, ``bulk_create``), nothing in flight."""
    from django.utils import timezone

    from django_iron_kyc.models import Customer

    when = when or timezone.now()
    return Customer.objects.bulk_create(
        [
            Customer(
                iron_id=uuid.uuid4(),
                email=f"bench-{uuid.uuid4().hex[:12]}@example.com",
                status=Customer.Status.IDENTIFICATION_REQUIRED,
                iron_created_at=when,
                iron_updated_at=when,
            )
            for _ in range(count)
        ],
        batch_size=2000,
    )


def bulk_pending(count: int, *, older_per_customer: int = 0) -> list[Any]:
    """``count`` customers, each with one Pending identification (and decided older ones).

    Rows only, made with ``bulk_create``; returns the pending identifications.
    """
    from datetime import timedelta

    from django.utils import timezone

    from django_iron_kyc.models import Identification

    now = timezone.now()
    long_ago = now - timedelta(days=1)
    rows = []
    for customer in bulk_customers(count, when=long_ago):
        for k in range(older_per_customer):
            created = long_ago - timedelta(hours=older_per_customer - k)
            rows.append(
                Identification(
                    customer=customer,
                    iron_id=uuid.uuid4(),
                    status=Identification.Status.DECLINED,
                    iron_created_at=created,
                    iron_updated_at=created,
                    created_at=created,
                )
            )
        rows.append(
            Identification(
                customer=customer,
                iron_id=uuid.uuid4(),
                status=Identification.Status.PENDING,
                url=f"https://verify.example.invalid/{customer.pk}",
                iron_created_at=long_ago,
                iron_updated_at=long_ago,
                created_at=long_ago,
                next_poll_at=now - timedelta(seconds=1),
            )
        )
    created = Identification.objects.bulk_create(rows, batch_size=2000)
    return [row for row in created if row.status == Identification.Status.PENDING]
