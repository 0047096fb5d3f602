from __future__ import annotations

from django.urls import URLPattern, path

app_name = "iron_kyc"

urlpatterns: list[URLPattern] = []
