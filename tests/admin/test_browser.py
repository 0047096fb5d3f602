"""A staff member's journey through the admin, in a real headless Chromium.

Create a customer at Iron, start an identification, approve it in sandbox, look at the
webhook deliveries Iron sent about it; and every list fits a 1280-pixel screen.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium
chromium-driver``); skipped with that hint when they are absent. Selenium is given the
driver's path, so Selenium Manager never downloads anything. Screenshots of each page go to
``test-output/`` (``IRON_KYC_TEST_OUTPUT`` to change it); the README's are made with
``IRON_KYC_TEST_OUTPUT=docs python -m pytest tests/admin/test_browser.py``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from django_iron_kyc.models import Customer, Identification, WebhookDelivery

from .support import SANDBOX_PATH, customer_at_iron, delivery_for, identification_at_iron

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("IRON_KYC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("IRON_KYC_CHROMEDRIVER", "/usr/bin/chromedriver")
REPOSITORY = Path(__file__).resolve().parents[2]
OUTPUT = Path(os.environ.get("IRON_KYC_TEST_OUTPUT", REPOSITORY / "test-output"))
WAIT_SECONDS = 15
SCREENSHOT_WIDTH = 1366  # a common laptop screen
NARROWEST_SCREEN = 1280  # the lists must fit this without scrolling sideways
PASSWORD = "correct horse"


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
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
        f"--window-size={SCREENSHOT_WIDTH},1000",
        "--lang=en-US",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Emulation.setScrollbarsHidden", {"hidden": True})
    failed_before = request.session.testsfailed
    try:
        yield driver
        if request.session.testsfailed > failed_before:
            # The call failed: keep what the browser showed, for CI artifacts.
            name = request.node.name
            screenshot(driver, f"{name}-failure.png")
            (OUTPUT / f"{name}-failure.html").write_text(driver.page_source, encoding="utf-8")
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def screenshot(driver: Any, name: str) -> Path:
    """Save a screenshot of the whole page (not just the window) under the output folder."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(SCREENSHOT_WIDTH, 600)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(SCREENSHOT_WIDTH, max(int(height) + 40, 600))
    path = OUTPUT / name
    driver.save_screenshot(str(path))
    return path


def overflow_at(driver: Any, width: int) -> int:
    """How many pixels a list is wider than its box in a window ``width`` pixels wide
    (Django's admin scrolls the list sideways inside its box, not the page)."""
    driver.set_window_size(width, 900)
    return int(
        driver.execute_script(
            "const box = document.querySelector('#changelist .results');"
            "const page = document.documentElement;"
            "return Math.max(box.scrollWidth - box.clientWidth,"
            " page.scrollWidth - page.clientWidth);"
        )
    )


def log_in(driver: Any, live_server: Any, next_path: str) -> None:
    from selenium.webdriver.common.by import By

    get_user_model().objects.create_superuser("staff", "staff@example.com", PASSWORD)
    driver.get(f"{live_server.url}{reverse('admin:login')}?next={next_path}")
    driver.find_element(By.NAME, "username").send_keys("staff")
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()


def others_at_iron(fake_iron: Any) -> None:
    """Other customers, so that the lists look like a working day's (long names included)."""
    grace = customer_at_iron(
        fake_iron,
        email="grace.brewster.hopper@naval-research-laboratory.example.org",
        name="Grace Brewster Murray Hopper",
    )
    in_review = identification_at_iron(fake_iron, grace, status="PendingReview", with_edd=True)
    delivery_for(
        in_review,
        "PendingReview",
        outcome=WebhookDelivery.Outcome.FAILED,
        error="OperationalError: could not obtain a lock on the identification row in time",
        attempts=2,
    )
    alan = customer_at_iron(fake_iron, email="alan@example.com", name="Alan Turing")
    declined = identification_at_iron(fake_iron, alan, status="Declined")
    delivery_for(declined, "Declined", outcome=WebhookDelivery.Outcome.PROCESSED, attempts=1)
    Customer.objects.create(
        email="new.hire@example.com",
        name="Not at Iron yet",
        last_error="Could not reach Iron to create the customer; it will be retried.",
    )
    Identification.objects.filter(pk=in_review.pk).update(stale_at=timezone.now())


def test_staff_journey_create_start_approve_and_read_the_deliveries(
    browser, live_server, fake_iron
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    others_at_iron(fake_iron)
    fake_iron.webhook_url = f"{live_server.url}{reverse('iron_kyc:webhook')}"
    ada = get_user_model().objects.create_user("ada", "ada@example.com")
    wait = WebDriverWait(browser, WAIT_SECONDS)

    def message() -> str:
        return str(
            wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".messagelist li"))).text
        )

    def status() -> str:
        return str(browser.find_element(By.CSS_SELECTOR, ".field-status_label .readonly").text)

    def click(selector: str) -> None:
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, selector))).click()

    # 1. Create the customer at Iron, from the admin.
    log_in(browser, live_server, reverse("admin:iron_kyc_customer_add"))
    wait.until(ec.visibility_of_element_located((By.ID, "id_email"))).send_keys("ada@example.com")
    browser.find_element(By.ID, "id_name").send_keys("Ada Lovelace")
    Select(browser.find_element(By.ID, "id_customer_type")).select_by_value("Person")
    browser.find_element(By.ID, "id_user").send_keys(str(ada.pk))
    screenshot(browser, "admin-customer-create.png")
    browser.find_element(By.CSS_SELECTOR, "input[value='Create at Iron']").click()

    assert message() == (
        "Customer Ada Lovelace <ada@example.com> created at Iron (Identification required). "
        "Start an identification from here."
    )
    customer = Customer.objects.get(user=ada)
    assert str(customer.iron_id) in fake_iron.customers
    title = "Ada Lovelace <ada@example.com> · Identification required"
    assert browser.find_element(By.CSS_SELECTOR, "#content h2").text == title
    assert browser.find_element(By.CSS_SELECTOR, ".breadcrumbs").text.endswith(title)

    # 2. Start an identification: the button says what it does, then asks.
    start = browser.find_element(By.CSS_SELECTOR, "a.iron-kyc-start-identification")
    # The admin's CSS upper-cases object tools: read the text as written.
    assert start.get_attribute("textContent").strip() == "Start an identification"
    screenshot(browser, "admin-customer.png")
    start.click()
    confirm = wait.until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, "input[value='Yes, start an identification']"))
    )
    screenshot(browser, "admin-start-confirmation.png")
    confirm.click()

    started = message()
    identification = customer.identifications.get()
    assert identification.status == Identification.Status.PENDING  # created at Iron already
    assert started == (
        f"Identification {str(identification.iron_id)[:8]} started for "
        "Ada Lovelace <ada@example.com> (Pending)."
    )
    click(".field-current_identification_display a")

    # 3. Approve it in sandbox, after a confirmation.
    approve = wait.until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, "a.iron-kyc-sandbox-approve"))
    )
    assert status() == "Pending"
    assert browser.find_element(By.CSS_SELECTOR, ".field-hosted_url a").text.startswith(
        fake_iron.base_url
    )
    screenshot(browser, "admin-identification-pending.png")
    approve.click()
    confirm = wait.until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, "input[value='Yes, approve in sandbox']"))
    )
    assert fake_iron.requests_to("POST", SANDBOX_PATH) == []
    screenshot(browser, "admin-sandbox-confirmation.png")
    confirm.click()

    assert message() == "1 identification approved in sandbox"
    assert status() == "Approved"
    assert not browser.find_elements(By.CSS_SELECTOR, "a.iron-kyc-sandbox-approve")
    screenshot(browser, "admin-identification-approved.png")
    (request,) = fake_iron.requests_to("POST", SANDBOX_PATH)
    assert request.json == {"approved": True}

    # 4. Iron's webhooks about it arrive; read them in the deliveries.
    results = fake_iron.deliver_webhooks()
    assert [result.status_code for result in results] == [200] * len(results) != []
    browser.get(f"{live_server.url}{reverse('admin:iron_kyc_webhookdelivery_changelist')}")
    rows = wait.until(
        ec.visibility_of_all_elements_located((By.CSS_SELECTOR, "#result_list tbody tr"))
    )
    assert len(rows) == len(results) + 2
    assert "Ada Lovelace" in rows[0].text
    screenshot(browser, "admin-deliveries.png")
    rows[-1 - 2].find_element(By.CSS_SELECTOR, "th a").click()  # Ada's first delivery

    customer_link = wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, ".field-customer_link a"))
    )
    assert customer_link.text == "Ada Lovelace <ada@example.com>"
    assert "Processed" in browser.find_element(By.CSS_SELECTOR, "#content h2").text
    screenshot(browser, "admin-delivery.png")
    customer_link.click()
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#content h2")))
    assert browser.find_element(By.CSS_SELECTOR, "#content h2").text == (
        "Ada Lovelace <ada@example.com> · Active"
    )
    screenshot(browser, "admin-customer-verified.png")

    # 5. The lists, as staff see them every day.
    for model in ("customer", "identification"):
        browser.get(f"{live_server.url}{reverse(f'admin:iron_kyc_{model}_changelist')}")
        wait.until(ec.visibility_of_element_located((By.ID, "result_list")))
        screenshot(browser, f"admin-{model}s.png")


def test_every_list_fits_a_1280_pixel_screen(browser, live_server, fake_iron):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    others_at_iron(fake_iron)
    log_in(browser, live_server, reverse("admin:index"))
    wait = WebDriverWait(browser, WAIT_SECONDS)
    wait.until(ec.visibility_of_element_located((By.ID, "content-main")))

    for model in ("customer", "identification", "webhookdelivery"):
        browser.get(f"{live_server.url}{reverse(f'admin:iron_kyc_{model}_changelist')}")
        wait.until(ec.visibility_of_element_located((By.ID, "result_list")))
        assert overflow_at(browser, NARROWEST_SCREEN) <= 0, model
