"""The test kit says what to do when a host test's set-up keeps the app from acting.

Host tests run in a pytest subprocess (one per host project, for speed) and each test here
reads the report of one of them. The first host project is this suite's own settings (Celery
eager, the app's URLs included); the second has no Celery app at all.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import transaction

from django_iron_kyc.testing.pytest_plugin import setup_hints

ROOT = Path(__file__).resolve().parents[1]

# The README's test as a host writes it, under a name and a django_db marker.
HOST_TEST = """
{marker}
def {name}(fake_iron):
    customer = services.create_customer(email="ada@example.com")
    identification = services.start_identification(customer)

    identification.refresh_from_db()
    assert identification.status == {expected!r}
"""

HOST_TESTS = "\n".join(
    [
        "import pytest\nfrom django_iron_kyc import services\n",
        HOST_TEST.format(
            marker="@pytest.mark.django_db", name="test_no_transaction", expected="Pending"
        ),
        HOST_TEST.format(
            marker="@pytest.mark.django_db(transaction=True)",
            name="test_transaction",
            expected="Pending",
        ),
        HOST_TEST.format(
            marker="@pytest.mark.django_db(transaction=True)",
            name="test_fails_for_another_reason",
            expected="Approved",
        ),
        """
@pytest.mark.django_db
def test_runs_the_callbacks_itself(fake_iron, django_capture_on_commit_callbacks):
    customer = services.create_customer(email="ada@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        services.start_identification(customer)
    assert False, "fails for another reason"
""",
    ]
)

NO_CELERY_APP_SETTINGS = """
SECRET_KEY = "host"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "django_iron_kyc",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
ROOT_URLCONF = "host_urls"
CELERY_TASK_ALWAYS_EAGER = True  # ignored: no Celery app reads it
"""

HINTS = "django-iron-kyc: why the app may not have acted"
NEVER_COMMITS = "on-commit callback(s) never ran: this test's database transaction never commits"
MARK_TRANSACTION = "@pytest.mark.django_db(transaction=True)"


_THIS_RUNS_SERVICES = {"DATABASE_URL", "TEST_DB_NAME", "SQLITE_TEST_PATH", "CELERY_BROKER_URL"}


def run_host_tests(folder: Path, settings_module: str, **env: str) -> dict[str, str]:
    """Run the host tests in ``folder``; each test's name maps to its outcome and report."""
    # The host project's own database (in-memory SQLite), never this run's test database.
    inherited = {k: v for k, v in os.environ.items() if k not in _THIS_RUNS_SERVICES}
    environment = {
        **inherited,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "DJANGO_SETTINGS_MODULE": settings_module,
        **env,
    }
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "test_host.py"],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = completed.stdout
    reports = dict(
        re.findall(r"^_{3,} (test_\w+) _{3,}$\n(.*?)(?=^[_=]{3,} )", output, re.M | re.S)
    )
    outcomes = re.findall(r"^(PASSED|FAILED) test_host\.py::(test_\w+)", output, re.M)
    return {name: f"{outcome}\n{reports.get(name, '')}" for outcome, name in outcomes}


@pytest.fixture(scope="module")
def host_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("host")
    (folder / "test_host.py").write_text(HOST_TESTS)
    return run_host_tests(folder, "tests.settings")


def test_a_kit_test_without_transaction_true_fails_saying_what_to_do(host_reports):
    report = host_reports["test_no_transaction"]

    assert report.startswith("FAILED")
    assert "assert '' == 'Pending'" in report
    assert HINTS in report
    assert NEVER_COMMITS in report
    assert MARK_TRANSACTION in report
    assert "django_capture_on_commit_callbacks(execute=True)" in report


def test_the_same_test_with_transaction_true_passes(host_reports):
    assert host_reports["test_transaction"].startswith("PASSED")


def test_no_hint_for_a_failure_that_is_not_the_set_up(host_reports):
    report = host_reports["test_fails_for_another_reason"]

    assert report.startswith("FAILED")
    assert "assert 'Pending' == 'Approved'" in report
    assert HINTS not in report


def test_no_hint_for_a_test_that_runs_the_callbacks_itself(host_reports):
    report = host_reports["test_runs_the_callbacks_itself"]

    assert report.startswith("FAILED")
    assert HINTS not in report


def test_a_kit_test_in_a_project_without_a_celery_app_fails_saying_what_to_do(tmp_path):
    """No celery.py: the tasks go to Celery's fallback app, which ignores the settings."""
    (tmp_path / "host_settings.py").write_text(NO_CELERY_APP_SETTINGS)
    (tmp_path / "host_urls.py").write_text(
        "from django.urls import include, path\n\n"
        'urlpatterns = [path("iron/", include("django_iron_kyc.urls"))]\n'
    )
    (tmp_path / "test_host.py").write_text(HOST_TESTS)

    # Where the fallback app publishes (nothing consumes it): in memory, not a real broker.
    reports = run_host_tests(tmp_path, "host_settings", CELERY_BROKER_URL="memory://")

    report = reports["test_transaction"]
    assert report.startswith("FAILED")
    assert "assert '' == 'Pending'" in report
    assert "iron_kyc.W003: django-iron-kyc's Celery tasks would go to Celery's" in report
    assert "from .celery import app as celery_app" in report
    assert NEVER_COMMITS not in report


@pytest.mark.django_db
def test_setup_hints_counts_the_callbacks_waiting_for_a_commit():
    assert setup_hints() == []
    transaction.on_commit(lambda: None)

    (hint,) = setup_hints()
    assert hint.startswith("1 " + NEVER_COMMITS)
    assert setup_hints(on_commit=False) == []
