"""The management commands: iron_kyc_reprocess_webhooks, iron_kyc_prune_webhooks and
iron_kyc_send_test_webhook."""

from __future__ import annotations

import io
import json
import uuid
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import responses
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_iron_kyc import signing
from django_iron_kyc.models import Identification, WebhookDelivery
from django_iron_kyc.testing import SignalRecorder, build_event, encode_event
from django_iron_kyc.testing.factories import IdentificationFactory
from tests.support import LONG_AGO, SECRET, identification_event

pytestmark = pytest.mark.usefixtures("no_secrets_in_logs")

Outcome = WebhookDelivery.Outcome


def run(command: str, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def identification(db: None) -> Identification:
    return IdentificationFactory(iron_created_at=LONG_AGO)


def stored(event: dict[str, Any], outcome: str, **fields: Any) -> WebhookDelivery:
    """A delivery as the view would have stored it."""
    return WebhookDelivery.objects.create(
        webhook_id=fields.pop("webhook_id", str(uuid.uuid4())),
        body=encode_event(event).decode(),
        outcome=outcome,
        **fields,
    )


# --- iron_kyc_reprocess_webhooks -----------------------------------------------------------


def test_reprocess_by_default_processes_every_failed_delivery_and_nothing_else(
    identification: Identification, django_capture_on_commit_callbacks: Any
) -> None:
    failed = stored(identification_event(identification), Outcome.FAILED, attempts=1, error="x")
    ignored = stored(build_event("ping", uuid.uuid4(), uuid.uuid4(), None), Outcome.IGNORED)

    with django_capture_on_commit_callbacks(execute=True):
        out, _ = run("iron_kyc_reprocess_webhooks")

    failed.refresh_from_db()
    ignored.refresh_from_db()
    identification.refresh_from_db()
    assert failed.outcome == Outcome.PROCESSED
    assert failed.attempts == 2
    assert failed.error == ""
    assert ignored.attempts == 0
    assert identification.status == "Approved"
    assert "Reprocessed 1 deliveries: 1 processed." in out


def test_reprocess_by_id_takes_primary_keys_and_webhook_ids_of_any_outcome(
    identification: Identification,
) -> None:
    by_pk = stored(identification_event(identification, "Processed"), Outcome.PROCESSED)
    by_webhook_id = stored(
        build_event("ping", uuid.uuid4(), uuid.uuid4(), None), Outcome.IGNORED, webhook_id="wh-9"
    )
    untouched = stored(identification_event(identification, "Declined"), Outcome.FAILED)

    _, err = run("iron_kyc_reprocess_webhooks", "--id", str(by_pk.pk), "wh-9", "nope", "99999")

    assert WebhookDelivery.objects.get(pk=by_pk.pk).attempts == 1
    assert WebhookDelivery.objects.get(pk=by_webhook_id.pk).attempts == 1
    assert WebhookDelivery.objects.get(pk=untouched.pk).attempts == 0
    assert "No delivery matches 'nope'." in err
    assert "No delivery matches '99999'." in err


def test_reprocess_by_outcome_applies_events_whose_object_is_now_known(
    identification: Identification,
) -> None:
    customer = identification.customer
    later_id = uuid.uuid4()
    event = build_event("identification_status", customer.iron_id, later_id, "Approved")
    delivery = stored(event, Outcome.UNKNOWN_OBJECT)
    # The refresh that unknown_object triggered has since fetched the identification.
    identification.status = "Declined"
    identification.save()
    newer = IdentificationFactory(customer=customer, iron_id=later_id, iron_created_at=LONG_AGO)

    run("iron_kyc_reprocess_webhooks", "--outcome", "unknown_object")

    delivery.refresh_from_db()
    newer.refresh_from_db()
    assert delivery.outcome == Outcome.PROCESSED
    assert newer.status == "Approved"


def test_reprocess_twice_acts_once(
    identification: Identification,
    iron_signals: SignalRecorder,
    django_capture_on_commit_callbacks: Any,
) -> None:
    delivery = stored(identification_event(identification), Outcome.FAILED)

    with django_capture_on_commit_callbacks(execute=True):
        run("iron_kyc_reprocess_webhooks")
        run("iron_kyc_reprocess_webhooks", "--id", str(delivery.pk))

    assert iron_signals.names() == ["identification_status_changed", "identification_approved"]


def test_reprocess_reports_deliveries_that_fail_again(identification: Identification) -> None:
    delivery = stored(identification_event(identification), Outcome.FAILED, attempts=1)

    with (
        mock.patch(
            "django_iron_kyc.services.deliveries.act_on_event",
            side_effect=RuntimeError("still broken"),
        ),
        pytest.raises(CommandError, match="1 deliveries failed again"),
    ):
        run("iron_kyc_reprocess_webhooks")

    delivery.refresh_from_db()
    assert delivery.outcome == Outcome.FAILED
    assert delivery.attempts == 2
    assert delivery.error == "RuntimeError: still broken"


def test_reprocess_dry_run_changes_nothing(identification: Identification) -> None:
    delivery = stored(identification_event(identification), Outcome.FAILED, webhook_id="wh-d")

    out, _ = run("iron_kyc_reprocess_webhooks", "--dry-run")

    delivery.refresh_from_db()
    assert delivery.outcome == Outcome.FAILED
    assert f"Would reprocess #{delivery.pk} (wh-d, failed)." in out
    assert "1 deliveries would be reprocessed." in out


def test_reprocess_refuses_an_unknown_outcome(db: None) -> None:
    with pytest.raises(CommandError, match="invalid choice"):
        run("iron_kyc_reprocess_webhooks", "--outcome", "exploded")


# --- iron_kyc_prune_webhooks ---------------------------------------------------------------


@pytest.fixture
def aged(db: None) -> dict[str, WebhookDelivery]:
    now = timezone.now()
    ping = build_event("ping", uuid.uuid4(), uuid.uuid4(), None)
    return {
        "old processed": stored(ping, Outcome.PROCESSED, received_at=now - timedelta(days=31)),
        "old ignored": stored(ping, Outcome.IGNORED, received_at=now - timedelta(days=40)),
        "old failed": stored(ping, Outcome.FAILED, received_at=now - timedelta(days=31)),
        "old received": stored(ping, Outcome.RECEIVED, received_at=now - timedelta(days=31)),
        "recent processed": stored(ping, Outcome.PROCESSED, received_at=now - timedelta(days=29)),
    }


def left(aged: dict[str, WebhookDelivery]) -> set[str]:
    pks = set(WebhookDelivery.objects.values_list("pk", flat=True))
    return {name for name, delivery in aged.items() if delivery.pk in pks}


def test_prune_deletes_old_deliveries_but_keeps_failed_and_unprocessed(
    aged: dict[str, WebhookDelivery],
) -> None:
    out, _ = run("iron_kyc_prune_webhooks", "--older-than", "30")

    assert left(aged) == {"old failed", "old received", "recent processed"}
    assert "Deleted 2 deliveries older than 30 days." in out
    assert "Kept 2 failed or unprocessed deliveries" in out


def test_prune_include_failed_deletes_those_too(aged: dict[str, WebhookDelivery]) -> None:
    run("iron_kyc_prune_webhooks", "--older-than", "30", "--include-failed")

    assert left(aged) == {"recent processed"}


def test_prune_dry_run_deletes_nothing(aged: dict[str, WebhookDelivery]) -> None:
    out, _ = run("iron_kyc_prune_webhooks", "--older-than", "30", "--dry-run")

    assert left(aged) == set(aged)
    assert "Would delete 2 deliveries older than 30 days." in out


@pytest.mark.parametrize("args", [["--older-than", "0"], ["--older-than", "soon"]])
def test_prune_needs_a_positive_number_of_days(db: None, args: list[str]) -> None:
    with pytest.raises(CommandError):
        run("iron_kyc_prune_webhooks", *args)


def test_prune_without_older_than_prunes_by_the_retention_setting(
    aged: dict[str, WebhookDelivery], settings: Any
) -> None:
    settings.IRON_KYC_DELIVERY_RETENTION = timedelta(days=35)

    out, _ = run("iron_kyc_prune_webhooks")

    assert left(aged) == set(aged) - {"old ignored"}
    assert "Deleted 1 deliveries older than 35 days." in out


def test_prune_without_older_than_keeps_everything_when_retention_is_none(
    aged: dict[str, WebhookDelivery], settings: Any
) -> None:
    settings.IRON_KYC_DELIVERY_RETENTION = None

    out, _ = run("iron_kyc_prune_webhooks")

    assert left(aged) == set(aged)
    assert "IRON_KYC_DELIVERY_RETENTION is None" in out


@pytest.mark.parametrize(("answer", "kept"), [("n", True), ("", True), ("y", False)])
def test_prune_asks_first_in_a_terminal(
    aged: dict[str, WebhookDelivery], answer: str, kept: bool
) -> None:
    with (
        mock.patch("sys.stdin.isatty", return_value=True),
        mock.patch("builtins.input", return_value=answer) as asked,
    ):
        out, _ = run("iron_kyc_prune_webhooks")

    assert asked.call_args.args == ("Delete 2 deliveries older than 30 days? [y/N] ",)
    assert ("old processed" in left(aged)) is kept
    assert ("Nothing deleted." in out) is kept


def test_prune_never_asks_with_no_input(aged: dict[str, WebhookDelivery]) -> None:
    with (
        mock.patch("sys.stdin.isatty", return_value=True),
        mock.patch("builtins.input", side_effect=AssertionError("asked")),
    ):
        run("iron_kyc_prune_webhooks", "--no-input")

    assert left(aged) == {"old failed", "old received", "recent processed"}


# --- iron_kyc_send_test_webhook ------------------------------------------------------------

DEFAULT_URL = "http://127.0.0.1:8000/iron/webhook/"


def sent(rsps: responses.RequestsMock) -> tuple[dict[str, Any], Any]:
    (call,) = rsps.calls
    return json.loads(call.request.body), call.request.headers


def test_send_test_webhook_signs_like_iron_and_posts_to_the_local_url() -> None:
    customer_id, identification_id = uuid.uuid4(), uuid.uuid4()
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, DEFAULT_URL, json={"outcome": "processed"})
        out, _ = run(
            "iron_kyc_send_test_webhook",
            "--customer-id",
            str(customer_id),
            "--id",
            str(identification_id),
            "--status",
            "Declined",
        )
        event, headers = sent(rsps)
        body = rsps.calls[0].request.body

    assert event["type"] == "identification_status"
    assert event["data"] == {
        "customer_id": str(customer_id),
        "message": {"IdentificationStatus": {"id": str(identification_id), "status": "Declined"}},
    }
    signing.verify(
        body=body,
        timestamp_header=headers["webhook-timestamp"],
        signature_header=headers["webhook-signature"],
        secrets=[SECRET],
        tolerance=60,
    )
    assert headers["webhook-id"]
    assert "-> 200" in out


def test_send_test_webhook_customer_status_flat_defaults() -> None:
    customer_id = uuid.uuid4()
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, "http://localhost:9999/hook/", json={"outcome": "ignored"})
        run(
            "iron_kyc_send_test_webhook",
            "--url",
            "http://localhost:9999/hook/",
            "--type",
            "customer_status",
            "--customer-id",
            str(customer_id),
            "--shape",
            "flat",
            "--webhook-id",
            "wh-local-1",
        )
        event, headers = sent(rsps)

    assert event["data"]["message"] == {"id": str(customer_id), "status": "Active"}
    assert headers["webhook-id"] == "wh-local-1"


def test_send_test_webhook_refuses_remote_hosts_unless_allowed() -> None:
    url = "https://example.com/iron/webhook/"
    with pytest.raises(CommandError, match="not a loopback host"):
        run("iron_kyc_send_test_webhook", "--url", url)

    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, url, json={"outcome": "unknown_object"})
        run("iron_kyc_send_test_webhook", "--url", url, "--allow-remote")


def test_send_test_webhook_fails_on_a_refusal() -> None:
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, DEFAULT_URL, status=401, json={"detail": "signature"})
        with pytest.raises(CommandError, match="-> 401"):
            run("iron_kyc_send_test_webhook")


def test_send_test_webhook_needs_a_secret(settings: Any) -> None:
    settings.IRON_KYC_WEBHOOK_SECRET = None
    with pytest.raises(CommandError, match="IRON_KYC_WEBHOOK_SECRET is not set"):
        run("iron_kyc_send_test_webhook")


@pytest.mark.django_db(transaction=True)
def test_send_test_webhook_end_to_end_through_a_live_server(live_server: Any) -> None:
    identification = IdentificationFactory(iron_created_at=LONG_AGO)
    customer = identification.customer

    out, _ = run(
        "iron_kyc_send_test_webhook",
        "--url",
        live_server.url + "/iron/webhook/",
        "--customer-id",
        str(customer.iron_id),
        "--id",
        str(identification.iron_id),
    )

    identification.refresh_from_db()
    assert identification.status == "Approved"
    assert '-> 200 {"outcome":"processed"}' in out
    assert WebhookDelivery.objects.get().outcome == Outcome.PROCESSED
