"""The app's webhook (inline and deferred), and the baseline: a bare view doing one INSERT."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from django_iron_kyc.webhooks import IronWebhookView

BASELINE_TABLE = "bench_baseline"


@csrf_exempt
def baseline(request: HttpRequest) -> JsonResponse:
    """What any webhook receiver does at the least: read the body, store it, answer."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {BASELINE_TABLE} (body, received_at) VALUES (%s, now())",
            [request.body.decode("utf-8")],
        )
    return JsonResponse({"outcome": "stored"})


urlpatterns = [
    path("iron/", include("django_iron_kyc.urls")),  # IRON_KYC_WEBHOOK_PROCESSING: inline
    path("deferred/webhook/", IronWebhookView.as_view(processing="deferred")),
    path("baseline/", baseline),
]
