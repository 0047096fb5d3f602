"""Benchmarks of django-iron-kyc: scripts that print figures (not collected as tests).

Run them from the repository root, e.g. ``python -m benchmarks.webhook_ingestion``; see
``benchmarks/README.md`` and the figures in ``benchmarks/RESULTS.md``.
"""
