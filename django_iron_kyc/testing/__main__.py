"""Run the fake Iron standalone: ``python -m django_iron_kyc.testing --port 8765``.

Point a development server at it (the settings to use are printed), create identifications
through the app and decide them on the fake's hosted page (the identification's ``url``).
With ``--webhook-url`` and ``--auto-deliver`` every change is POSTed, signed, to the app.
Stops on Ctrl-C.
"""

# A command-line program: printing is what it is for.
# ruff: noqa: T201

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from collections.abc import Sequence

from .events import MESSAGE_SHAPES
from .fake import ERROR_FORMATS, FakeIron, RecordedRequest

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m django_iron_kyc.testing",
        description="Run a fake Iron KYC API on 127.0.0.1 until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free)")
    parser.add_argument("--api-key", default="test-api-key-d0-not-log", help="expected X-API-Key")
    parser.add_argument("--webhook-url", help="the app's webhook URL, for deliveries")
    parser.add_argument(
        "--webhook-secret", default="test_secret", help="secret deliveries are signed with"
    )
    parser.add_argument(
        "--auto-deliver",
        action="store_true",
        help="POST each webhook delivery to --webhook-url as soon as it happens",
    )
    parser.add_argument("--message-shape", choices=MESSAGE_SHAPES, default="tagged")
    parser.add_argument("--error-format", choices=ERROR_FORMATS, default="iron")
    parser.add_argument(
        "--conflict-on-pending",
        action="store_true",
        help='answer 409 "Has Pending Identification" instead of superseding',
    )
    parser.add_argument("--quiet", action="store_true", help="do not print each request")
    return parser


def _print_request(record: RecordedRequest) -> None:
    status = "dropped" if record.status is None else str(record.status)
    print(f"{record.method} {record.path} -> {status}", flush=True)


def main(argv: Sequence[str] | None = None, *, stop: threading.Event | None = None) -> int:
    """Run until Ctrl-C (or until ``stop`` is set, for tests)."""
    args = build_parser().parse_args(argv)
    if args.auto_deliver and not args.webhook_url:
        print("--auto-deliver needs --webhook-url", file=sys.stderr)
        return 2
    fake = FakeIron(
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        webhook_url=args.webhook_url,
        message_shape=args.message_shape,
        conflict_on_pending=args.conflict_on_pending,
        error_format=args.error_format,
        auto_deliver=args.auto_deliver,
        host=args.host,
        port=args.port,
        on_request=None if args.quiet else _print_request,
    )
    fake.start()
    print(f"Fake Iron running at {fake.base_url}", flush=True)
    print("Settings for your Django project:")
    for name, value in fake.django_settings().items():
        print(f"    {name} = {value!r}")
    # The README's settings read these three from the environment.
    print("or, for settings that read them from the environment, in the server's shell:")
    for name, value in fake.django_settings().items():
        print(f"    export {name}={shlex.quote(str(value))}")
    if args.webhook_url:
        mode = "sent at once" if args.auto_deliver else "held (no --auto-deliver)"
        print(f"Webhooks to {args.webhook_url}: {mode}")
    print("Decide identifications on their hosted page (the identification's url).")
    print("Ctrl-C to stop.", flush=True)
    try:
        (stop or threading.Event()).wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    # Ctrl-C and kill stop it even when started where SIGINT is ignored (a background job of
    # a non-interactive shell inherits that, as CI runners do).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
