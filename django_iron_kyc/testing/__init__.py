"""Test kit for projects that use django-iron-kyc (fake Iron, webhook signer, factories)."""
