"""The page an identification's ``url`` opens: its status, and buttons a person decides with.

Iron's real page collects documents; this one lets someone driving the fake by hand move an
undecided identification along, with no API key, as the end user's actions would.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from .answers import HTML_CONTENT_TYPE, Answer, RefusedError, path_id
from .server import RecordedRequest
from .state import IronState, NotDecidableError

__all__ = ["HostedPage"]

_ACTIONS = (
    ("Processed", "Submit documents"),
    ("Approved", "Approve"),
    ("Declined", "Decline"),
)


class HostedPage:
    """``GET /verify/{id}`` shows the page; ``POST`` with a ``status`` decides (303 back)."""

    def __init__(self, state: IronState) -> None:
        self._state = state

    def show(self, request: RecordedRequest, identification_id: str) -> Answer:
        status = self._state.identification(path_id(identification_id))["status"]
        buttons = "".join(
            f'<button name="status" value="{value}">{label}</button> ' for value, label in _ACTIONS
        )
        page = (
            "<!doctype html><title>Fake Iron identification</title>"
            f"<h1>Fake Iron identification</h1><p>Identification {html.escape(identification_id)}: "
            f"<strong>{html.escape(status)}</strong></p>"
            f'<form method="post">{buttons}</form>'
        )
        return Answer(200, page.encode("utf-8"), HTML_CONTENT_TYPE)

    def decide(self, request: RecordedRequest, identification_id: str) -> Answer:
        self._state.identification(path_id(identification_id))  # unknown: 404 first
        form = parse_qs(request.body.decode("utf-8", "replace"))
        status = (form.get("status") or [""])[-1]
        if status not in dict(_ACTIONS):
            raise RefusedError(400, "unknown action")
        try:
            self._state.decide(identification_id, status)
        except NotDecidableError:
            raise RefusedError(400, "Identification is not pending") from None
        return Answer(303, b"", None, {"Location": request.path})
