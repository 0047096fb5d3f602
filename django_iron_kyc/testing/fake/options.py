"""How a fake Iron behaves: the options every part of it reads, and can change while it runs."""

from __future__ import annotations

from dataclasses import dataclass

from ..events import MESSAGE_SHAPES

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_WEBHOOK_SECRET",
    "ERROR_FORMATS",
    "LIST_ORDERS",
    "FakeOptions",
]

DEFAULT_API_KEY = "test-api-key-d0-not-log"
DEFAULT_WEBHOOK_SECRET = "test_secret"
ERROR_FORMATS = ("iron", "envelope")
LIST_ORDERS = ("newest", "oldest")


@dataclass
class FakeOptions:
    """The options of one fake Iron (``FakeIron``'s keyword arguments of the same names).

    - ``api_key``: the ``X-API-Key`` every API request must carry;
    - ``webhook_secret``: what deliveries are signed with;
    - ``webhook_url``: where deliveries are POSTed over HTTP (``deliver_webhooks()`` without
      ``send``, and ``auto_deliver``);
    - ``message_shape``: ``"tagged"`` or ``"flat"`` webhook messages;
    - ``conflict_on_pending``: answer 409 ``Has Pending Identification`` instead of
      superseding the identification in flight;
    - ``error_format``: ``"iron"`` (Iron's error bodies) or ``"envelope"``
      (``{"error": {"code", "message", "request_id"}}``);
    - ``list_order``: ``"newest"`` or ``"oldest"`` first in identification lists;
    - ``sandbox_webhooks``: whether sandbox decisions send webhooks;
    - ``auto_deliver``: POST each delivery to ``webhook_url`` from a background thread as
      soon as it is queued.

    The values are checked when the options are made; a test may change one later.
    """

    api_key: str = DEFAULT_API_KEY
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    webhook_url: str | None = None
    message_shape: str = "tagged"
    conflict_on_pending: bool = False
    error_format: str = "iron"
    list_order: str = "newest"
    sandbox_webhooks: bool = True
    auto_deliver: bool = False

    def __post_init__(self) -> None:
        for name, allowed in (
            ("message_shape", MESSAGE_SHAPES),
            ("error_format", ERROR_FORMATS),
            ("list_order", LIST_ORDERS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {value!r}")
