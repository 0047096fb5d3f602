"""The example project, run the way its README says: as a subprocess with its own settings.

Nothing of it is imported here: the example has its own settings module, user model and
Celery app, which must not mix with this test suite's.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
MANAGE = EXAMPLE / "manage.py"
# The subprocess fails on deprecation warnings too, as this suite does.
PYTHON = [
    sys.executable,
    "-W",
    "error::DeprecationWarning",
    "-W",
    "error::PendingDeprecationWarning",
]
TIMEOUT = 120


def example_env() -> dict[str, str]:
    """This environment without anything that would switch the example to other services."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "IRON_KYC_", "CELERY_"))
        and name not in ("DATABASE_URL", "TEST_DB_NAME", "PYTHONPATH")
    }
    env["DJANGO_SETTINGS_MODULE"] = "example.settings"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PYTHON, str(MANAGE), "iron_kyc_demo", *args],
        cwd=ROOT,
        env=example_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def assert_demo_passed(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Traceback" not in result.stderr
    # The summary's table: one approved, one declined, one approved by polling.
    assert re.search(r"ada@example\.com\s+Active\s+Approved\s+yes\n", out)
    assert re.search(
        r"grace@example\.com\s+IdentificationRequired\s+Declined\s+no \(declined\)", out
    )
    assert re.search(r"alan@example\.com\s+Active\s+Approved\s+yes\n", out)
    assert re.search(r"katherine@example\.com\s+Active\s+Approved\s+yes\n", out)
    # The outcome lines.
    assert "\nResult: OK\n" in out
    assert "  approved: ada@example.com (sandbox, then webhook)\n" in out
    assert "  declined: grace@example.com (sandbox, then webhook)\n" in out
    assert "  polled:   alan@example.com (approved at Iron, no webhook, found by polling)\n" in out
    assert "  herself:  katherine@example.com (the verify page, then Iron's hosted page)\n" in out


def test_demo_runs_the_whole_flow_and_reports_each_outcome() -> None:
    result = run_demo()

    assert_demo_passed(result)
    out = result.stdout
    # Over real HTTP: webhooks answered by the web server, signals from each path.
    assert re.search(
        r"ada: webhook identification_status \(Approved\) .* -> HTTP 200 processed", out
    )
    assert re.search(r"grace: webhook identification_status \(Declined\) .* -> HTTP 200", out)
    assert "alan: user 'alan' is verified: identification_approved was sent once (via poll)" in out
    assert re.search(r"identification_approved\s+3\s+poll 1, sandbox 1, webhook 1\n", out)
    assert re.search(r"identification_declined\s+1\s+sandbox 1\n", out)
    assert re.search(r"GET  /api/customers/\{id\}/identifications\s+1\n", out)
    assert re.search(r"POST /api/sandbox/identification/\{id\}\s+2\n", out)
    assert re.search(r"Time taken: \d+\.\d s\n", out)
    # The host project's receivers log, shown under the step that caused it.
    assert "log accounts.receivers: User alan@example.com is now verified" in out
    # A user verifies herself: the app's page, one click to Iron's hosted page, and back.
    assert 'katherine: logged in; /iron/verify/ says "Verify your identity"' in out
    assert re.search(r"katherine: one click: .* 303 to Iron's hosted page http://127\.0\.0\.1", out)
    assert (
        'katherine: back on the page: "Your identity is verified" (JSON: approved); '
        "user 'katherine' is verified"
    ) in out
    # The temporary database is gone: the next run starts clean.
    [db] = re.findall(r"fresh SQLite file (\S+), migrated", out)
    assert not Path(db).exists()


def test_demo_runs_twice_in_a_row_on_a_database_file_it_keeps(tmp_path: Path) -> None:
    db = (tmp_path / "demo.sqlite3").resolve()

    first = run_demo("--db", str(db))
    second = run_demo("--db", str(db))

    assert_demo_passed(first)
    assert_demo_passed(second)
    assert f"fresh SQLite file {db}, migrated" in second.stdout
    assert db.exists()


def test_demo_fails_with_the_step_and_reason_when_an_outcome_is_missing() -> None:
    # The host project forgot its "approved" receiver: the demo must not report success.
    script = "\n".join(
        [
            "import sys",
            f"sys.path[:0] = [{str(EXAMPLE)!r}, {str(ROOT)!r}]",
            "import django",
            "django.setup()",
            "from accounts import receivers",
            "from django_iron_kyc.signals import identification_approved",
            "assert identification_approved.disconnect(receivers.mark_verified)",
            "from django.core.management import execute_from_command_line",
            "execute_from_command_line(['manage.py', 'iron_kyc_demo'])",
        ]
    )
    result = subprocess.run(
        [*PYTHON, "-c", script],
        cwd=ROOT,
        env=example_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "Demo FAILED at step 9 (ada: the host project's receiver): "
        "ada@example.com: user is 'unverified', expected 'verified'"
    ) in result.stderr
    assert "Result: OK" not in result.stdout


# --- the exploring server -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Devserver:
    """``iron_kyc_devserver`` in a subprocess; its output read line by line in a thread."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                *PYTHON,
                str(MANAGE),
                "iron_kyc_devserver",
                f"127.0.0.1:{self.port}",
                "--fake-port",
                "0",
                "--db",
                str(tmp_path / "devserver.sqlite3"),
            ],
            cwd=ROOT,
            env=example_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, marker: str, timeout: float = TIMEOUT) -> str:
        """Everything printed until a line containing ``marker``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {marker!r} within {timeout}s:\n{''.join(self.output)}")
            if line is None:
                pytest.fail(f"the devserver ended before {marker!r}:\n{''.join(self.output)}")
            self.output.append(line)
            if marker in line:
                return "".join(self.output)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@pytest.fixture
def devserver(tmp_path: Path) -> Iterator[Devserver]:
    server = Devserver(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_devserver_lets_the_printed_superuser_approve_in_sandbox_in_the_admin(
    devserver: Devserver,
) -> None:
    printed = devserver.wait_for("Quit the server with")
    password = re.search(r"password: (\S+)", printed)
    ada = re.search(
        r"ada@example\.com: identification Pending, admin \S+/identification/(\d+)/", printed
    )
    assert password, printed
    assert ada, printed
    session = requests.Session()
    session.trust_env = False  # loopback only, never through a proxy
    login_url = f"{devserver.base_url}/admin/login/"
    session.get(login_url, timeout=10).raise_for_status()

    logged_in = session.post(
        login_url,
        data={
            "username": "admin",
            "password": password[1],
            "next": "/admin/",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=10,
    )
    approved = session.post(
        f"{devserver.base_url}/admin/iron_kyc/identification/",
        data={
            "action": "sandbox_approve",
            "_selected_action": ada[1],
            "post": "yes",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=30,
    )
    verified = session.get(
        f"{devserver.base_url}/admin/accounts/user/?kyc_status__exact=verified", timeout=10
    )

    assert logged_in.url == f"{devserver.base_url}/admin/", logged_in.text
    assert "1 identification approved in sandbox" in approved.text
    assert "ada@example.com" in verified.text
    assert "grace@example.com" not in verified.text
    assert devserver.stop() == 0


def test_devserver_lets_the_printed_demo_user_verify_herself_on_the_page(
    devserver: Devserver,
) -> None:
    printed = devserver.wait_for("Quit the server with")
    demo = re.search(r"Demo user: +(\S+) .*\n +username: (\S+)\n +password: (\S+)", printed)
    assert demo, printed
    login_url, username, password = demo.groups()
    session = requests.Session()
    session.trust_env = False  # loopback only, never through a proxy
    session.get(login_url, timeout=10).raise_for_status()

    page = session.post(
        login_url,
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=10,
    )
    pressed = session.post(
        f"{devserver.base_url}/iron/verify/",
        data={"csrfmiddlewaretoken": session.cookies["csrftoken"]},
        timeout=30,
        allow_redirects=False,
    )
    hosted = session.get(pressed.headers["Location"], timeout=10)

    assert page.url == f"{devserver.base_url}/iron/verify/", page.text
    assert "Verify my identity</button>" in page.text
    assert pressed.status_code == 303
    assert "<h1>Fake Iron identification</h1>" in hosted.text
    state = session.get(f"{devserver.base_url}/iron/verification/", timeout=10).json()
    assert state["phase"] == "in_progress"
    assert state["hosted_url"] == pressed.headers["Location"]
    assert devserver.stop() == 0
