"""A staff member approves an identification in sandbox, in a real headless Chromium.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium
chromium-driver``); skipped with that hint when they are absent. Selenium is given the
driver's path, so Selenium Manager never downloads anything. Screenshots go to
``test-output/`` (``IRON_KYC_TEST_OUTPUT`` to change it).
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

from django_iron_kyc.models import Identification

from .support import SANDBOX_PATH, customer_at_iron, identification_at_iron

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("IRON_KYC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("IRON_KYC_CHROMEDRIVER", "/usr/bin/chromedriver")
REPOSITORY = Path(__file__).resolve().parents[2]
OUTPUT = Path(os.environ.get("IRON_KYC_TEST_OUTPUT", REPOSITORY / "test-output"))
WAIT_SECONDS = 15


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
        "--window-size=1280,1000",
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
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(int(height) + 40, 600))
    path = OUTPUT / name
    driver.save_screenshot(str(path))
    return path


def test_staff_approves_a_pending_identification_in_sandbox(browser, live_server, fake_iron):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    get_user_model().objects.create_superuser("staff", "staff@example.com", "correct horse")
    customer = customer_at_iron(fake_iron, email="ada@example.com", name="Ada Lovelace")
    pending = identification_at_iron(fake_iron, customer)
    change_path = reverse("admin:iron_kyc_identification_change", args=[pending.pk])
    wait = WebDriverWait(browser, WAIT_SECONDS)

    browser.get(f"{live_server.url}{reverse('admin:login')}?next={change_path}")
    browser.find_element(By.NAME, "username").send_keys("staff")
    browser.find_element(By.NAME, "password").send_keys("correct horse")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # The admin's CSS upper-cases object tools, so find the buttons by class, check the text.
    approve = wait.until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, "a.iron-kyc-sandbox-approve"))
    )
    decline = browser.find_element(By.CSS_SELECTOR, "a.iron-kyc-sandbox-decline")
    assert approve.get_attribute("textContent").strip() == "Approve in sandbox"
    assert decline.get_attribute("textContent").strip() == "Decline in sandbox"
    screenshot(browser, "admin-identification-pending.png")

    approve.click()
    confirm = wait.until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, "input[value='Yes, approve in sandbox']"))
    )
    assert str(pending.iron_id) in browser.find_element(By.ID, "content").text
    assert fake_iron.requests_to("POST", SANDBOX_PATH) == []
    screenshot(browser, "admin-sandbox-confirmation.png")
    confirm.click()

    success = wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, ".messagelist .success"))
    )
    assert success.text == "1 identification approved in sandbox"
    assert browser.current_url == f"{live_server.url}{change_path}"
    status = browser.find_element(By.CSS_SELECTOR, ".field-status_label .readonly").text
    assert status == "Approved"
    assert not browser.find_elements(By.CSS_SELECTOR, "a.iron-kyc-sandbox-approve")
    screenshot(browser, "admin-sandbox-approved.png")
    pending.refresh_from_db()
    assert pending.status == Identification.Status.APPROVED
    (request,) = fake_iron.requests_to("POST", SANDBOX_PATH)
    assert request.json == {"approved": True}
