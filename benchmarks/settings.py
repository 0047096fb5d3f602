"""A lean production-like host project for the benchmarks (PostgreSQL, DEBUG off).

``BENCH_DATABASE_URL`` (default ``postgres://postgres@127.0.0.1:5432/test_bench``) is the
database; the benchmark scripts drop and create it.
"""

from __future__ import annotations

import os

import dj_database_url

SECRET_KEY = "benchmarks-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "django_iron_kyc",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "benchmarks.urls"
WSGI_APPLICATION = "benchmarks.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test_bench")
# Persistent connections, as a production deployment has them.
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600)}

IRON_KYC_API_KEY = "bench-api-key"
IRON_KYC_BASE_URL = os.environ.get("IRON_KYC_BASE_URL", "http://127.0.0.1:9")
IRON_KYC_WEBHOOK_SECRET = "bench_secret"
IRON_KYC_MAX_RETRIES = 0

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "memory://")
CELERY_TASK_ALWAYS_EAGER = os.environ.get("CELERY_TASK_ALWAYS_EAGER", "1") == "1"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_iron_kyc": {"level": "WARNING"}},
}
