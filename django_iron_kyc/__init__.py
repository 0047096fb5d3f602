"""django-iron-kyc: verify a Django project's customers through Iron's hosted KYC API."""

__all__ = ["__version__"]

__version__ = "0.1.0.dev0"
