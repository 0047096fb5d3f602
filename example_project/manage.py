#!/usr/bin/env python
"""Django's command-line utility for the example project.

Run it from anywhere, e.g. from the repository root::

    python example_project/manage.py iron_kyc_demo       # the whole flow, then a summary
    python example_project/manage.py iron_kyc_devserver  # the admin, with a fake Iron alongside
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    # The example runs against this checkout of django-iron-kyc, installed or not.
    sys.path.insert(1, str(HERE.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
