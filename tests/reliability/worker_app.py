"""The Celery app of the worker subprocesses started by ``test_worker_kill.py``.

``celery -A tests.reliability.worker_app worker`` with ``tests.reliability.worker_settings``.
Every django-iron-kyc signal the worker sends is pushed, as JSON, onto the Redis list named
by ``IRON_RELIABILITY_SIGNAL_KEY``, so the test (another process) can wait for it and count
it; so is the name and result of every task that succeeds, onto
``IRON_RELIABILITY_TASK_KEY``. The poll lease is one second here, so a sweep redelivered
after its worker died finds the identifications it had claimed due again (in production
the next sweep, five minutes on, does).

With ``IRON_RELIABILITY_ASK_IRON_WHILE_ACTING`` set, acting on a webhook delivery also asks
Iron for the delivery's customer, after acting and before the processing transaction
commits: a request the test can hold at the fake Iron to kill the worker at that point.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

from celery import Celery
from celery.signals import task_success, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.reliability.worker_settings")

app = Celery("iron_kyc_reliability")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["django_iron_kyc"])


@worker_init.connect
def record_signals(**_: Any) -> None:
    import redis

    from django_iron_kyc import signals
    from django_iron_kyc.services import polling

    polling.POLL_LEASE = timedelta(seconds=1)
    broker = redis.Redis.from_url(os.environ["IRON_RELIABILITY_BROKER_URL"])
    key = os.environ["IRON_RELIABILITY_SIGNAL_KEY"]

    def recorder(name: str) -> Any:
        def receive(**kwargs: Any) -> None:
            identification = kwargs.get("identification")
            entry = {
                "signal": name,
                "pk": identification.pk if identification is not None else None,
                "previous_status": kwargs.get("previous_status"),
                "status": kwargs.get("status"),
                "source": kwargs.get("source"),
            }
            broker.rpush(key, json.dumps(entry))

        return receive

    for name in (
        "identification_status_changed",
        "identification_approved",
        "identification_declined",
        "identification_expired",
    ):
        getattr(signals, name).connect(recorder(name), weak=False, dispatch_uid=f"rel-{name}")

    task_key = os.environ.get("IRON_RELIABILITY_TASK_KEY")
    if task_key:

        def record_task(sender: Any = None, result: Any = None, **_: Any) -> None:
            entry = {"task": getattr(sender, "name", str(sender)), "result": result}
            broker.rpush(task_key, json.dumps(entry, default=str))

        task_success.connect(record_task, weak=False, dispatch_uid="rel-task-success")

    if os.environ.get("IRON_RELIABILITY_ASK_IRON_WHILE_ACTING"):
        _ask_iron_while_acting()


def _ask_iron_while_acting() -> None:
    from django_iron_kyc import services
    from django_iron_kyc.services import deliveries

    act = deliveries.act_on_event

    def act_then_ask_iron(row: Any, event: Any, *args: Any, **kwargs: Any) -> str:
        outcome: str = act(row, event, *args, **kwargs)
        if event.customer_iron_id is not None:
            with services.get_client() as client:
                client.get_customer(event.customer_iron_id)
        return outcome

    deliveries.act_on_event = act_then_ask_iron
