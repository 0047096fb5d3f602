"""``iron_kyc_forget_customer IRON_ID... [--archive-at-iron] [--yes]``."""

from __future__ import annotations

import io
import uuid
from unittest import mock

import pytest
from django.core.management import CommandError, call_command

from django_iron_kyc.models import Customer, Identification
from django_iron_kyc.testing import FakeIron
from django_iron_kyc.testing.mirror import mirror_customer, mirror_identification
from tests.accounts.models import Payout

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_secrets_in_logs")]

ARCHIVE_PATH = r"/archive$"


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("iron_kyc_forget_customer", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def ada(iron: FakeIron) -> Customer:
    customer = mirror_customer(iron, email="ada@example.com", name="Ada Lovelace")
    mirror_identification(iron, customer)
    return customer


@pytest.fixture
def bob(iron: FakeIron) -> Customer:
    return mirror_customer(iron, email="bob@example.com")


def test_forgets_each_customer_given_and_says_what_it_deleted(
    iron: FakeIron, ada: Customer, bob: Customer
) -> None:
    out, _ = run(str(ada.iron_id), "--yes")

    assert list(Customer.objects.all()) == [bob]
    assert not Identification.objects.exists()
    assert f"Forgot customer {ada.iron_id}: 1 customers, 1 identifications" in out
    assert "ada@example.com" not in out
    assert "Ada Lovelace" not in out
    assert iron.requests_to("PUT", ARCHIVE_PATH) == []


def test_archives_at_iron_first_when_asked(iron: FakeIron, ada: Customer, bob: Customer) -> None:
    out, _ = run(str(ada.iron_id), str(bob.iron_id), "--archive-at-iron", "--yes")

    assert not Customer.objects.exists()
    assert len(iron.requests_to("PUT", ARCHIVE_PATH)) == 2
    assert {c["status"] for c in iron.customers.values()} == {"Archived"}
    assert "cannot be undone" in out


def test_a_customer_iron_refuses_to_archive_is_kept_and_the_command_fails(
    iron: FakeIron, ada: Customer, bob: Customer
) -> None:
    iron.fail_next(status=403, path=ARCHIVE_PATH)
    err = io.StringIO()

    with pytest.raises(CommandError, match="1 of 2 customers not forgotten"):
        call_command(
            "iron_kyc_forget_customer",
            str(ada.iron_id),
            str(bob.iron_id),
            "--archive-at-iron",
            "--yes",
            stdout=io.StringIO(),
            stderr=err,
        )

    assert list(Customer.objects.all()) == [ada]
    assert f"Customer {ada.iron_id} not forgotten" in err.getvalue()
    assert "403" in err.getvalue()


def test_unknown_or_malformed_ids_forget_nothing(ada: Customer) -> None:
    with pytest.raises(CommandError, match="No customer here"):
        run(str(ada.iron_id), str(uuid.uuid4()), "--yes")
    with pytest.raises(CommandError, match="UUID"):
        run("ada@example.com", "--yes")

    assert Customer.objects.filter(pk=ada.pk).exists()


def test_without_yes_and_no_terminal_it_refuses(ada: Customer) -> None:
    with pytest.raises(CommandError, match="--yes"):
        run(str(ada.iron_id))

    assert Customer.objects.filter(pk=ada.pk).exists()


@pytest.mark.parametrize(("answer", "forgotten"), [("y", True), ("n", False), ("", False)])
def test_in_a_terminal_it_asks_first(ada: Customer, answer: str, forgotten: bool) -> None:
    with (
        mock.patch("sys.stdin.isatty", return_value=True),
        mock.patch("builtins.input", return_value=answer) as asked,
    ):
        out, _ = run(str(ada.iron_id))

    assert asked.call_args.args == ("Forget these 1 customers here? [y/N] ",)
    assert Customer.objects.filter(pk=ada.pk).exists() is not forgotten
    assert ("Nothing forgotten." in out) is not forgotten


def test_a_customer_your_rows_protect_is_kept_and_the_command_fails(
    iron: FakeIron, ada: Customer
) -> None:
    Payout.objects.create(customer=ada)
    err = io.StringIO()

    with pytest.raises(CommandError, match="1 of 1 customers not forgotten"):
        call_command(
            "iron_kyc_forget_customer",
            str(ada.iron_id),
            "--archive-at-iron",
            "--yes",
            stdout=io.StringIO(),
            stderr=err,
        )

    assert "protected foreign keys" in err.getvalue()
    assert Customer.objects.filter(pk=ada.pk).exists()
    assert iron.requests_to("PUT", ARCHIVE_PATH) == []
