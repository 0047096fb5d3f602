"""URLs: the admin at ``/admin/`` and django-iron-kyc under ``/iron/``.

Iron's webhook goes to ``/iron/webhook/`` (the view is named ``iron_kyc:webhook``).
"""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("iron/", include("django_iron_kyc.urls")),
]
