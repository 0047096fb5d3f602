"""The demo's end-user journey: a user verifies themselves, as a browser would, over HTTP.

They log in, open ``/iron/verify/`` (and the app's ``GET /iron/verification/`` says the
same in JSON), press "Verify my identity" (one click: their customer and a Link
identification are created, and the answer is a 303 to Iron's hosted page), approve on
the fake Iron's hosted page, and come back to "Your identity is verified". Every outcome is
checked; ``expect`` raises the demo's failure.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

import requests
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.urls import reverse

from django_iron_kyc.testing import FakeIron

Expect = Callable[[object, str], None]


class SelfService:
    """Runs the journey through the demo command's steps (``begin``, ``step``,
    ``deliver_webhooks``) against the project's web server at ``base_url``."""

    def __init__(self, command: Any, fake: FakeIron, base_url: str, expect: Expect) -> None:
        self.command = command
        self.fake = fake
        self.base_url = base_url
        self.expect = expect
        self.http = requests.Session()
        self.http.trust_env = False  # loopback only, never through a proxy

    def run(self, person: tuple[str, str, str]) -> None:
        # A password that lives for one run of the demo: hashed the quick way, not with
        # the project's slow-on-purpose default.
        with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
            self.journey(person)

    def journey(self, person: tuple[str, str, str]) -> None:
        username, email, name = person
        first, _, last = name.partition(" ")
        password = secrets.token_urlsafe(12)
        get_user_model().objects.create_user(
            username, email=email, password=password, first_name=first, last_name=last
        )
        verify = self.base_url + reverse("iron_kyc:verify")
        verification = self.base_url + reverse("iron_kyc:verification")

        self.command.begin(f"{username}: log in and open the verification page")
        page = self.log_in(username, password)
        self.expect(page.url == verify, f"logging in led to {page.url}, not {verify}")
        self.expect_heading(page, "Verify your identity")
        phase = self.http.get(verification, timeout=10).json()
        self.expect(phase["phase"] == "not_started", f"the JSON endpoint says {phase}")
        self.command.step(
            f'{username}: logged in; {reverse("iron_kyc:verify")} says "Verify your identity" '
            f"(GET {reverse('iron_kyc:verification')}: {phase['phase']})"
        )

        self.command.begin(f'{username}: press "Verify my identity"')
        pressed = self.http.post(
            verify,
            data={"csrfmiddlewaretoken": self.csrf_token()},
            timeout=30,
            allow_redirects=False,
        )
        hosted = pressed.headers.get("Location", "")
        self.expect(
            pressed.status_code == 303 and hosted.startswith(self.fake.base_url),
            f"pressing the button answered {pressed.status_code} to {hosted!r}, not a 303 "
            "to Iron's hosted page",
        )
        self.command.step(
            f"{username}: one click: customer and Link identification created, "
            f"303 to Iron's hosted page {hosted}"
        )

        self.command.begin(f"{username}: approve on Iron's hosted page")
        page = self.http.get(hosted, timeout=10)
        self.expect(page.status_code == 200, f"Iron's hosted page answered {page.status_code}")
        approved = self.http.post(
            hosted, data={"status": "Approved"}, timeout=10, allow_redirects=False
        )
        self.expect(approved.status_code == 303, f"Iron's page answered {approved.status_code}")
        self.command.step(f"{username}: approved on Iron's hosted page (the fake's Approve button)")
        self.command.deliver_webhooks(username)

        self.command.begin(f"{username}: back on the verification page")
        page = self.http.get(verify, timeout=10)
        self.expect_heading(page, "Your identity is verified")
        phase = self.http.get(verification, timeout=10).json()
        self.expect(phase["phase"] == "approved", f"the JSON endpoint says {phase}")
        user = get_user_model().objects.get(username=username)
        self.expect(user.is_verified, f"user {username!r} is {user.kyc_status!r}")
        self.command.step(
            f'{username}: back on the page: "Your identity is verified" (JSON: '
            f"{phase['phase']}); user {username!r} is {user.kyc_status}"
        )

    def log_in(self, username: str, password: str) -> requests.Response:
        login = self.base_url + reverse("login")
        self.http.get(login, timeout=10).raise_for_status()
        return self.http.post(
            login,
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": self.csrf_token(),
            },
            timeout=10,
        )

    def csrf_token(self) -> str:
        return str(self.http.cookies.get("csrftoken", ""))

    def expect_heading(self, page: requests.Response, words: str) -> None:
        heading = re.search(r"<h1[^>]*>\s*(.*?)\s*</h1>", page.text, re.S)
        found = heading[1] if heading else None
        self.expect(
            page.status_code == 200 and found == words,
            f"{page.url} answered {page.status_code} with the heading {found!r}, not {words!r}",
        )
