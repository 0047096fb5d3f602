"""The page ``iron_kyc:verify``: words for each phase, the button, the redirect, templates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_iron_kyc.models import Customer, Identification
from django_iron_kyc.testing.factories import CustomerFactory, IdentificationFactory

pytestmark = pytest.mark.django_db(transaction=True)

CREATE_PATH = r"^/api/customers/[^/]+/identifications/v2$"
CUSTOMERS_PATH = r"^/api/customers$"


def url() -> str:
    return reverse("iron_kyc:verify")


def csrf_token(client: Client) -> str:
    """What a browser's form sends: the page sets the cookie, the form carries the token."""
    page = client.get(url())
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token, page.content.decode()
    return token[1]


def press_the_button(client: Client, token: str | None = None) -> Any:
    return client.post(url(), {"csrfmiddlewaretoken": token or csrf_token(client)})


def heading(response: Any) -> str:
    match = re.search(r"<h1[^>]*>\s*(.*?)\s*</h1>", response.content.decode(), re.S)
    assert match, response.content.decode()
    return match[1]


def test_anonymous_users_are_sent_to_the_login_page():
    response = Client().get(url())

    assert response.status_code == 302
    assert response["Location"] == f"{django_settings.LOGIN_URL}?next={url()}"


def test_not_started_offers_the_button_in_a_post_form_with_csrf(browser_client):
    response = browser_client.get(url())

    assert response.status_code == 200
    assert heading(response) == "Verify your identity"
    html = response.content.decode()
    assert re.search(
        r'<form method="post">\s*<input type="hidden" name="csrfmiddlewaretoken"', html
    )
    assert '<button class="iron-kyc-button" type="submit">Verify my identity</button>' in html
    assert "Refresh" not in response
    assert response["Cache-Control"] == "private, no-cache"
    # The app's own base: no stylesheet, script or font from anywhere.
    assert not re.search(r"<link|<script|@import|url\(", html)
    assert '<html lang="en' in html


@pytest.mark.parametrize(
    ("traits", "words", "button", "refresh"),
    [
        ({"unconfirmed": True}, "Preparing your verification", False, "3"),
        ({}, "Your verification is in progress", False, None),
        ({"processed": True}, "We are reviewing your verification", False, "30"),
        ({"approved": True}, "Your identity is verified", False, None),
        ({"declined": True}, "Your verification was declined", True, None),
        ({"expired": True}, "Your verification expired", True, None),
        (
            {"unconfirmed": True, "failed_at": timezone.now()},
            "Verification is unavailable",
            True,
            None,
        ),
    ],
    ids=["starting", "in_progress", "in_review", "approved", "declined", "expired", "unavailable"],
)
def test_each_phase_is_said_in_words(browser_client, user, traits, words, button, refresh):
    IdentificationFactory(customer=CustomerFactory(user=user), **traits)

    response = browser_client.get(url())

    assert heading(response) == words
    html = response.content.decode()
    assert ("Verify my identity</button>" in html) is button
    assert response.get("Refresh") == refresh
    if refresh:
        assert f"This page updates itself every {refresh} seconds." in html


def test_in_progress_links_to_irons_hosted_page(browser_client, user):
    identification = IdentificationFactory(customer=CustomerFactory(user=user))

    html = browser_client.get(url()).content.decode()

    assert f'<a class="iron-kyc-button" href="{identification.url}">Continue</a>' in html


def test_an_archived_customer_is_told_to_contact_the_site(browser_client, user):
    CustomerFactory(user=user, status=Customer.Status.ARCHIVED)

    response = browser_client.get(url())

    assert heading(response) == "Verification is unavailable"
    assert "Please contact us." in response.content.decode()
    assert "<form" not in response.content.decode()


def test_another_users_verification_is_never_shown(browser_client, make_user):
    theirs = IdentificationFactory(customer=CustomerFactory(user=make_user("grace")))

    response = browser_client.get(url(), {"user": theirs.customer.user_id, "id": theirs.pk})

    assert heading(response) == "Verify your identity"
    assert theirs.url not in response.content.decode()


# --- pressing the button --------------------------------------------------------------------


def test_one_click_goes_to_irons_hosted_page(browser_client, user, iron):
    response = press_the_button(browser_client)

    assert response.status_code == 303
    identification = Identification.objects.get(customer__user=user)
    assert response["Location"] == identification.url
    assert identification.url.startswith(iron.base_url)
    assert len(iron.requests_to("POST", CUSTOMERS_PATH)) == 1


def test_a_second_click_goes_to_the_same_hosted_page(browser_client, iron):
    token = csrf_token(browser_client)
    first = press_the_button(browser_client, token)
    second = press_the_button(browser_client, token)

    assert second.status_code == 303
    assert second["Location"] == first["Location"]
    assert len(iron.requests_to("POST", CREATE_PATH)) == 1


def test_when_the_hosted_url_is_late_the_page_says_it_is_being_prepared(
    browser_client, iron, settings
):
    settings.IRON_KYC_VERIFICATION_REDIRECT_WAIT = 0
    iron.fail_next(status=503, path=CREATE_PATH)  # Iron has not answered the create yet

    response = press_the_button(browser_client)

    assert response.status_code == 303
    assert response["Location"] == url()
    page = browser_client.get(url())
    assert heading(page) == "Preparing your verification"
    assert page["Refresh"] == "3"


def test_a_post_without_the_csrf_token_is_refused(browser_client, iron):
    assert browser_client.post(url()).status_code == 403
    assert iron.requests == []


def test_a_user_without_email_is_told_so(iron, make_user):
    client = Client()
    client.force_login(make_user("noemail", email=""))

    response = client.post(url())

    assert response.status_code == 400
    assert (
        '<p class="iron-kyc-error" role="alert">Your account has no email address. Add one, '
        "then verify your identity.</p>"
    ) in response.content.decode()
    assert Customer.objects.count() == 0


def test_iron_down_is_a_503_page_with_retry_after(browser_client, iron):
    iron.fail_next(status=503, path=CUSTOMERS_PATH)

    response = press_the_button(browser_client)

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert "Please try again in 30 seconds." in response.content.decode()
    assert "Verify my identity</button>" in response.content.decode()


def test_the_page_and_the_json_endpoint_share_one_throttle_budget(
    browser_client, api, iron, settings
):
    settings.IRON_KYC_VERIFICATION_THROTTLE_RATE = "2/hour"
    token = csrf_token(browser_client)
    assert press_the_button(browser_client, token).status_code == 303
    assert api.post(reverse("iron_kyc:verification")).status_code == 200

    response = press_the_button(browser_client, token)

    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "Too many attempts." in response.content.decode()
    assert api.post(reverse("iron_kyc:verification")).status_code == 429


def test_get_asks_iron_nothing(browser_client, user, iron):
    CustomerFactory(user=user, unconfirmed=True, last_error="down")

    browser_client.get(url())

    assert iron.requests == []
    assert Customer.objects.get().iron_id is None


# --- templates ------------------------------------------------------------------------------


def with_templates(settings: Any, folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(folder)]}]


BASE = (
    "<!doctype html><title>{% block title %}{% endblock %}</title>"
    "<header>{{ marker }}</header>{% block content %}{% endblock %}"
)


def test_the_projects_base_html_is_extended_when_it_has_one(browser_client, settings, tmp_path):
    with_templates(settings, tmp_path, {"base.html": BASE.replace("{{ marker }}", "Our shop")})

    html = browser_client.get(url()).content.decode()

    assert "<header>Our shop</header>" in html
    assert "Verify my identity</button>" in html


def test_the_base_template_setting_names_the_base(browser_client, settings, tmp_path):
    with_templates(
        settings,
        tmp_path,
        {
            "base.html": BASE.replace("{{ marker }}", "not this one"),
            "site/page.html": BASE.replace("{{ marker }}", "Our site"),
        },
    )
    settings.IRON_KYC_VERIFICATION_BASE_TEMPLATE = "site/page.html"

    html = browser_client.get(url()).content.decode()

    assert "<header>Our site</header>" in html


def test_the_page_template_can_be_overridden(browser_client, settings, tmp_path):
    with_templates(
        settings, tmp_path, {"iron_kyc/verify.html": "Ours: {{ phase }} {{ status.can_start }}"}
    )

    assert browser_client.get(url()).content.decode() == "Ours: not_started True"
