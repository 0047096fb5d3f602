"""System checks, each with a stable ID (``iron_kyc.E001``...) and a hint.

Silence a warning you accept with ``SILENCED_SYSTEM_CHECKS = ["iron_kyc.W002"]``. Importing
this package registers them: :mod:`.settings` (the ``IRON_KYC_*`` values; the end-user
ones in :mod:`.verification`) and :mod:`.environment` (what the app needs around it).
"""

from .environment import check_celery_app
from .settings import check_settings

__all__ = ["check_celery_app", "check_settings"]
