"""URLs: the admin at ``/admin/`` and django-iron-kyc under ``/iron/``.

Iron's webhook goes to ``/iron/webhook/`` (the view is named ``iron_kyc:webhook``). A user
logs in at ``/accounts/login/`` and verifies themselves at ``/verify/`` (the app's page
``/iron/verify/``; its JSON is ``/iron/verification/``).
"""

from django.contrib import admin
from django.contrib.auth.views import LoginView, LogoutView
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
    path("verify/", RedirectView.as_view(pattern_name="iron_kyc:verify", permanent=False)),
    path("iron/", include("django_iron_kyc.urls")),
]
