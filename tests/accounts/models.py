from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """A custom user model, as most host projects have."""

    class Meta:
        app_label = "accounts"
