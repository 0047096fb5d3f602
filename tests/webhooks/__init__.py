"""Tests of django_iron_kyc.webhooks, one module per webhooks module (views, receive, storage,
drain), plus races on PostgreSQL, a fuzzer and the fake Iron's outbox sent to the view.

The view is reached over its real URL with CSRF checks on, under tests/settings.py's hostile
DRF defaults. Every test's log records are scanned for secrets (``no_secrets_in_logs``).
The outcome tests run in both processing modes (the ``processing`` fixture).
"""
