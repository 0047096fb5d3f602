"""The test kit around the fake: factories, the pytest plugin's fixtures, the standalone runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import requests
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from django_iron_kyc import signals, signing
from django_iron_kyc.client import IronClient
from django_iron_kyc.conf import iron_settings
from django_iron_kyc.models import Customer, Identification
from django_iron_kyc.services import RemoteIdentification, Source, apply_identification_state
from django_iron_kyc.testing import (
    FakeIron,
    SignalRecorder,
    WebhookSender,
    build_event,
    pytest_plugin,
)
from django_iron_kyc.testing.__main__ import main
from django_iron_kyc.testing.factories import CustomerFactory, IdentificationFactory
from django_iron_kyc.testing.mirror import mirror_customer, mirror_identification
from tests.support import checkout_first

pytest_plugins = ["pytester"]

# --- a stand-in for the app's webhook view, to test the sender on its own ----------------


@csrf_exempt
def _echo_webhook(request: HttpRequest) -> HttpResponse:
    """Verifies like the real view (signature over the raw body) and echoes what it got."""
    try:
        signing.verify(
            body=request.body,
            timestamp_header=request.headers.get("webhook-timestamp"),
            signature_header=request.headers.get("webhook-signature"),
            secrets=iron_settings.WEBHOOK_SECRETS,
            tolerance=iron_settings.WEBHOOK_TOLERANCE,
        )
    except signing.SignatureError as exc:
        return HttpResponse(exc.reason, status=401)
    return JsonResponse(
        {
            "webhook_id": request.headers.get("webhook-id"),
            "content_type": request.content_type,
            "body": request.body.decode(),
        }
    )


def _csrf_protected(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path(
        "iron/",
        include(([path("webhook/", _echo_webhook, name="webhook")], "iron_kyc")),
    ),
    path("protected/", _csrf_protected),
]
echo_urls = pytest.mark.urls(__name__)


# --- factories ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_customer_factory_makes_a_customer_known_at_iron():
    one, two = CustomerFactory(), CustomerFactory()

    assert isinstance(one.iron_id, uuid.UUID)
    assert one.status == Customer.Status.IDENTIFICATION_REQUIRED
    assert one.email != two.email
    assert one.iron_created_at is not None
    assert Customer.objects.count() == 2


@pytest.mark.django_db
def test_customer_factory_unconfirmed_is_not_at_iron_yet():
    customer = CustomerFactory(unconfirmed=True)

    assert customer.iron_id is None
    assert customer.status == ""
    assert customer.iron_created_at is None


@pytest.mark.django_db
def test_identification_factory_makes_a_pending_identification_with_its_customer():
    identification = IdentificationFactory()

    assert identification.status == Identification.Status.PENDING
    assert isinstance(identification.iron_id, uuid.UUID)
    assert str(identification.iron_id) in identification.url
    assert identification.iron_updated_at == identification.iron_created_at
    assert identification.customer.pk is not None
    assert identification.is_in_flight
    assert list(Identification.objects.pending()) == [identification]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("trait", "status"),
    [("approved", "Approved"), ("declined", "Declined"), ("expired", "Expired")],
)
def test_identification_factory_terminal_traits(trait, status):
    identification = IdentificationFactory(**{trait: True})

    assert identification.status == status
    assert identification.is_terminal
    assert bool(identification.review_comment) == (trait == "declined")


@pytest.mark.django_db
def test_identification_factory_unconfirmed_is_an_intent_only():
    identification = IdentificationFactory(unconfirmed=True)

    assert identification.iron_id is None
    assert identification.status == ""
    assert identification.url == ""
    assert identification.iron_created_at is None
    assert identification.is_in_flight
    assert not Identification.objects.pending().exists()


@pytest.mark.django_db
def test_identification_factory_superseded_no_longer_in_flight():
    customer = CustomerFactory()
    old = IdentificationFactory(customer=customer, superseded=True)
    new = IdentificationFactory(customer=customer)

    assert list(Identification.objects.in_flight()) == [new]
    assert old.is_superseded


# --- fake_iron fixture --------------------------------------------------------------------


def test_fake_iron_fixture_points_the_settings_at_a_running_fake(fake_iron):
    assert fake_iron.running
    assert iron_settings.BASE_URL == fake_iron.base_url
    assert iron_settings.API_KEY == fake_iron.api_key
    assert iron_settings.WEBHOOK_SECRETS == [fake_iron.webhook_secret]
    assert iron_settings.is_sandbox_host

    with IronClient() as client:
        customer = client.create_customer(email="ada@example.com", idempotency_key=uuid.uuid4())

    assert list(fake_iron.customers) == [customer["id"]]


@pytest.mark.fake_iron(conflict_on_pending=True, message_shape="flat")
def test_fake_iron_marker_passes_options(fake_iron):
    assert fake_iron.conflict_on_pending
    assert fake_iron.message_shape == "flat"


PLUGIN_TESTS = """
import uuid
import pytest
import requests

seen = []

def test_fake_runs(fake_iron):
    seen.append(fake_iron)
    answer = requests.get(
        f"{fake_iron.base_url}/api/customers/{uuid.uuid4()}",
        headers={"X-API-Key": fake_iron.api_key},
        timeout=5,
    )
    assert answer.status_code == 404

def test_fake_was_stopped_after_the_test():
    assert seen and not seen[0].running

@pytest.mark.fake_iron(error_format="envelope")
def test_marker(fake_iron):
    assert fake_iron.error_format == "envelope"

def test_signals_recorder(iron_signals):
    assert iron_signals.names() == []
"""


@pytest.mark.parametrize("args", [("-p", "no:django"), ()], ids=["no-pytest-django", "no-settings"])
def test_plugin_works_without_pytest_django_or_django_settings(pytester, monkeypatch, args):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    monkeypatch.setenv("PYTHONPATH", checkout_first(dict(os.environ))["PYTHONPATH"])
    pytester.makepyfile(test_plugin=PLUGIN_TESTS)

    result = pytester.runpytest_subprocess(*args, "-q", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=4)


def test_plugin_uses_the_host_secret_and_restores_the_settings(pytester, monkeypatch):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    monkeypatch.setenv("PYTHONPATH", checkout_first(dict(os.environ))["PYTHONPATH"])
    pytester.makeconftest(
        """
def pytest_configure():
    from django.conf import settings
    settings.configure(
        INSTALLED_APPS=[],
        DATABASES={},
        IRON_KYC_BASE_URL="http://127.0.0.1:9",
        IRON_KYC_API_KEY="host-key",
        IRON_KYC_WEBHOOK_SECRET="host-secret",
    )
"""
    )
    pytester.makepyfile(
        """
from django.conf import settings

def test_during(fake_iron):
    assert settings.IRON_KYC_BASE_URL == fake_iron.base_url
    assert settings.IRON_KYC_API_KEY == fake_iron.api_key == "test-api-key-d0-not-log"
    assert fake_iron.webhook_secret == "host-secret"

def test_after():
    assert settings.IRON_KYC_BASE_URL == "http://127.0.0.1:9"
    assert settings.IRON_KYC_API_KEY == "host-key"
"""
    )

    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=2)


# --- iron_signals ---------------------------------------------------------------------------


def test_iron_signals_records_every_app_signal_with_its_kwargs(iron_signals):
    signals.customer_status_changed.send(
        sender=Customer, customer="c", previous_status="", status="Active", source="poll"
    )
    signals.identification_expired.send(
        sender=Identification, identification="i", customer="c", previous_status="Pending"
    )

    assert iron_signals.names() == ["customer_status_changed", "identification_expired"]
    [kwargs] = iron_signals.kwargs_of("customer_status_changed")
    assert kwargs == {
        "sender": Customer,
        "customer": "c",
        "previous_status": "",
        "status": "Active",
        "source": "poll",
    }
    assert len(iron_signals) == 2
    assert iron_signals[1][0] == "identification_expired"

    iron_signals.clear()
    assert list(iron_signals) == []


def test_signal_recorder_stops_recording_when_disconnected():
    recorder = SignalRecorder()
    recorder.connect()
    recorder.disconnect()

    signals.identification_approved.send_robust(sender=Identification)  # other receivers may fail

    assert recorder.names() == []


def test_signal_recorder_records_inside_a_with_block_from_any_thread():
    with SignalRecorder() as recorder:
        sender = threading.Thread(
            target=signals.customer_status_changed.send,
            kwargs={"sender": Customer, "customer": "c", "status": "Active", "source": "poll"},
        )
        sender.start()
        sender.join()
    signals.customer_status_changed.send(sender=Customer, customer="c", status="Suspended")

    assert recorder.names() == ["customer_status_changed"]
    assert recorder.kwargs_of("customer_status_changed")[0]["status"] == "Active"


def test_the_plugin_gives_the_kit_s_helpers():
    assert pytest_plugin.SignalRecorder is SignalRecorder
    assert pytest_plugin.WebhookSender is WebhookSender


@pytest.mark.django_db
def test_iron_signals_sees_signals_sent_by_the_services_on_commit(
    iron_signals, django_capture_on_commit_callbacks
):
    identification = IdentificationFactory()
    remote = RemoteIdentification(
        iron_id=identification.iron_id,
        status="Approved",
        updated_at=identification.iron_updated_at.replace(
            year=identification.iron_updated_at.year + 1
        ),
    )

    with django_capture_on_commit_callbacks(execute=True):
        apply_identification_state(identification, remote, source=Source.POLL)

    assert "identification_approved" in iron_signals.names()
    [approved] = iron_signals.kwargs_of("identification_approved")
    assert approved["identification"].pk == identification.pk


# --- send_iron_webhook ----------------------------------------------------------------------


@echo_urls
def test_send_iron_webhook_signs_an_event_with_the_configured_secret(send_iron_webhook):
    event = build_event("identification_status", uuid.uuid4(), uuid.uuid4(), "Approved")

    response = send_iron_webhook(event, webhook_id="wh-1")

    assert response.status_code == 200
    echoed = response.json()
    assert echoed["webhook_id"] == "wh-1"
    assert echoed["content_type"] == "application/json"
    assert json.loads(echoed["body"]) == event


@echo_urls
def test_send_iron_webhook_posts_a_fake_delivery_as_it_was_signed(fake_iron, send_iron_webhook):
    fake_iron.set_customer_status(fake_iron.add_customer()["id"], "Suspended")
    [delivery] = fake_iron.outbox

    response = send_iron_webhook(delivery)

    assert response.status_code == 200
    assert response.json()["webhook_id"] == delivery.webhook_id
    assert response.json()["body"].encode() == delivery.body


@echo_urls
def test_send_iron_webhook_can_sign_with_another_secret_or_tamper_headers(send_iron_webhook):
    event = build_event("customer_status", "c", "c", "Active")

    assert send_iron_webhook(event, secret="not-the-secret").status_code == 401
    assert send_iron_webhook(event, headers={"webhook-signature": "v1=00"}).status_code == 401
    missing = send_iron_webhook(event, headers={"Webhook-Timestamp": None})
    assert missing.status_code == 401
    assert b"webhook-timestamp" in missing.content
    assert send_iron_webhook(b'{"raw": true}').status_code == 200


@echo_urls
def test_send_iron_webhook_keeps_csrf_checks_on(send_iron_webhook):
    event = build_event("customer_status", "c", "c", "Active")

    assert send_iron_webhook(event, url="/protected/").status_code == 403


@echo_urls
def test_send_iron_webhook_needs_a_secret(send_iron_webhook, settings):
    settings.IRON_KYC_WEBHOOK_SECRET = ""

    with pytest.raises(RuntimeError, match="IRON_KYC_WEBHOOK_SECRET"):
        send_iron_webhook(build_event("customer_status", "c", "c", "Active"))


@echo_urls
def test_deliver_fake_webhooks_sends_the_outbox_through_the_test_client(
    fake_iron, deliver_fake_webhooks
):
    identification = fake_iron.add_identification(fake_iron.add_customer()["id"])
    fake_iron.set_identification_status(identification["id"], "Approved")
    queued = [d.webhook_id for d in fake_iron.outbox]

    responses = deliver_fake_webhooks()

    assert [r.status_code for r in responses] == [200, 200]
    assert [r.json()["webhook_id"] for r in responses] == queued
    assert fake_iron.outbox == []


# --- mirror_customer / mirror_identification ---------------------------------------------


@pytest.mark.django_db
def test_mirror_customer_and_identification_are_the_same_at_iron_and_here(fake_iron):
    customer = mirror_customer(fake_iron, email="ada@example.com")
    identification = mirror_identification(fake_iron, customer, status="Processed")

    remote_customer = fake_iron.customers[customer.iron_id]
    assert (customer.email, customer.status) == ("ada@example.com", remote_customer["status"])
    remote = fake_iron.identifications[identification.iron_id]
    assert remote["customer_id"] == str(customer.iron_id)
    assert (identification.status, identification.url) == ("Processed", remote["url"])
    assert identification.iron_updated_at.isoformat().startswith(remote["updated_at"][:19])
    assert Identification.objects.get(iron_id=identification.iron_id).customer == customer


@pytest.mark.django_db
def test_mirror_identification_needs_a_customer_known_at_iron():
    with FakeIron() as fake, pytest.raises(ValueError, match="not at Iron"):
        mirror_identification(fake, CustomerFactory(unconfirmed=True))


# --- python -m django_iron_kyc.testing ----------------------------------------------------


def test_main_prints_the_base_url_and_settings(capsys):
    stop = threading.Event()
    stop.set()

    assert main(["--port", "0", "--api-key", "k", "--webhook-secret", "s"], stop=stop) == 0

    out = capsys.readouterr().out
    assert "Fake Iron running at http://127.0.0.1:" in out
    assert "IRON_KYC_API_KEY = 'k'" in out
    assert "IRON_KYC_WEBHOOK_SECRET = 's'" in out
    assert "    export IRON_KYC_BASE_URL=http://127.0.0.1:" in out
    assert "    export IRON_KYC_API_KEY=k\n" in out
    assert "    export IRON_KYC_WEBHOOK_SECRET=s\n" in out


def test_main_refuses_auto_deliver_without_a_webhook_url(capsys):
    assert main(["--port", "0", "--auto-deliver"], stop=threading.Event()) == 2
    assert "--webhook-url" in capsys.readouterr().err


def test_module_runs_standalone_until_interrupted(tmp_path: Path):
    env = checkout_first({**os.environ, "PYTHONUNBUFFERED": "1"})
    env.pop("DJANGO_SETTINGS_MODULE", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "django_iron_kyc.testing", "--port", "0", "--api-key", "k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("Fake Iron running at http://127.0.0.1:")
        base_url = first.rsplit(" ", 1)[-1].strip()
        while "Ctrl-C" not in process.stdout.readline():
            pass

        answer = requests.get(f"{base_url}/api/customers/{uuid.uuid4()}", timeout=5)
        assert answer.status_code == 401
        assert process.stdout.readline().strip().endswith("-> 401")

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
