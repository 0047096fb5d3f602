from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import User


@admin.register(User)
class ExampleUserAdmin(UserAdmin):
    list_display = ("username", "email", "kyc_status", "kyc_decided_at", "is_staff")
    list_filter = ("kyc_status", *UserAdmin.list_filter)
    readonly_fields = ("kyc_status", "kyc_decided_at")
    fieldsets = (
        *UserAdmin.fieldsets,
        ("Identity (set by the django-iron-kyc receivers)", {"fields": readonly_fields}),
    )
