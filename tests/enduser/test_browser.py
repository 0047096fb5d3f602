"""A signed-in user verifies themselves in a real headless Chromium, with JavaScript off.

The journey: the page offers "Verify my identity"; one click lands on Iron's hosted page
(the fake Iron's); the user submits there and comes back to "in review"; Iron approves; the
page says "Approved". Iron's webhooks reach the live server over HTTP.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium
chromium-driver``); skipped with that hint when they are absent. Selenium is given the
driver's path, so Selenium Manager never downloads anything. Screenshots of each page go to
``test-output/`` (``IRON_KYC_TEST_OUTPUT`` to change it); ``IRON_KYC_SCREENSHOTS=docs``
writes them to ``docs/enduser-*.png``, the README's pictures, instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from django_iron_kyc import services
from django_iron_kyc.models import Identification

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("IRON_KYC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("IRON_KYC_CHROMEDRIVER", "/usr/bin/chromedriver")
REPOSITORY = Path(__file__).resolve().parents[2]
OUTPUT = (
    REPOSITORY / "docs"
    if os.environ.get("IRON_KYC_SCREENSHOTS") == "docs"
    else Path(os.environ.get("IRON_KYC_TEST_OUTPUT", REPOSITORY / "test-output"))
)
WAIT_SECONDS = 15
CREATE_PATH = r"^/api/customers/[^/]+/identifications/v2$"


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium with JavaScript off: the page must work without it."""
    missing = [
        p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.isfile(p) and os.access(p, os.X_OK))
    ]
    if missing:
        pytest.skip(
            f"no headless browser ({', '.join(missing)} missing): "
            "apt-get install -y chromium chromium-driver"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1000,760",
        "--lang=en-US",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs", {"profile.managed_default_content_settings.javascript": 2}
    )
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    failed_before = request.session.testsfailed
    try:
        yield driver
        if request.session.testsfailed > failed_before:
            name = request.node.name
            screenshot(driver, f"{name}-failure.png")
            (OUTPUT / f"{name}-failure.html").write_text(driver.page_source, encoding="utf-8")
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def screenshot(driver: Any, name: str) -> Path:
    """The whole page, measured without JavaScript (DevTools' layout metrics)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    height = int(metrics["cssContentSize"]["height"])
    driver.set_window_size(1000, max(height + 48, 360))
    path = OUTPUT / name
    driver.save_screenshot(str(path))
    return path


def sign_in(browser: Any, live_server: Any, user: Any) -> None:
    """Give the browser a session of ``user`` (the test project has no login page)."""
    client = Client()
    client.force_login(user)
    browser.get(f"{live_server.url}/static/")  # any page of the host, to set its cookie
    browser.add_cookie(
        {
            "name": django_settings.SESSION_COOKIE_NAME,
            "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
            "path": "/",
        }
    )


def heading(browser: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.TAG_NAME, "h1").text)


def wait_until(browser: Any, condition: Any) -> None:
    """A click returns before the page it leads to has loaded: wait for what it shows
    (an element read while the page is replaced is looked for again)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException)
    WebDriverWait(browser, WAIT_SECONDS, ignored_exceptions=ignored).until(condition)


def decide_at_iron(browser: Any, status: str) -> None:
    """Press a button of the fake Iron's hosted page and wait until it shows the new status."""
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, f"button[value={status}]").click()
    wait_until(browser, lambda b: b.find_element(By.TAG_NAME, "strong").text == status)


def test_a_user_verifies_themselves_from_the_page_to_approved(browser, live_server, iron, user):
    from selenium.webdriver.common.by import By

    iron.webhook_url = live_server.url + reverse("iron_kyc:webhook")
    verify = live_server.url + reverse("iron_kyc:verify")
    sign_in(browser, live_server, user)

    browser.get(verify)
    assert heading(browser) == "Verify your identity"
    button = browser.find_element(By.CSS_SELECTOR, "form button[type=submit]")
    assert button.text == "Verify my identity"
    screenshot(browser, "enduser-1-start.png")

    button.click()  # one click: the customer and the identification, then Iron's page
    wait_until(browser, lambda b: b.current_url.startswith(iron.base_url))
    identification = Identification.objects.get(customer__user=user)
    assert browser.current_url == identification.url
    assert browser.find_element(By.TAG_NAME, "h1").text == "Fake Iron identification"
    screenshot(browser, "enduser-2-iron-hosted-page.png")

    decide_at_iron(browser, "Processed")
    assert all(r.status_code == 200 for r in iron.deliver_webhooks())
    browser.get(verify)  # the user comes back on their own: Iron has no return URL
    assert heading(browser) == "We are reviewing your verification"
    assert not browser.find_elements(By.TAG_NAME, "form")
    screenshot(browser, "enduser-3-in-review.png")

    browser.get(identification.url)
    decide_at_iron(browser, "Approved")
    assert all(r.status_code == 200 for r in iron.deliver_webhooks())
    browser.get(verify)
    assert heading(browser) == "Your identity is verified"
    assert browser.find_element(By.CLASS_NAME, "iron-kyc-badge").text == "Approved"
    screenshot(browser, "enduser-4-approved.png")


def test_the_preparing_page_refreshes_itself_into_the_continue_link(
    browser, live_server, iron, user, settings
):
    from selenium.webdriver.common.by import By

    settings.IRON_KYC_VERIFICATION_REDIRECT_WAIT = 0
    iron.fail_next(status=503, path=CREATE_PATH)  # Iron has not answered the create yet
    verify = live_server.url + reverse("iron_kyc:verify")
    sign_in(browser, live_server, user)
    browser.get(verify)

    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_until(browser, lambda b: heading(b) == "Preparing your verification")
    assert browser.current_url == verify
    screenshot(browser, "enduser-preparing.png")
    services.submit_identification(Identification.objects.get())  # Celery's retry

    # No JavaScript: the page's own Refresh header brings the news within seconds.
    wait_until(browser, lambda b: heading(b) == "Your verification is in progress")
    link = browser.find_element(By.LINK_TEXT, "Continue")
    assert link.get_attribute("href") == Identification.objects.get().url
    screenshot(browser, "enduser-in-progress.png")
