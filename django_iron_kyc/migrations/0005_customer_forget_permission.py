"""The ``iron_kyc.forget_customer`` permission: the admin's "Forget" action needs it.

Numbered 0005 and depending on 0003: ``0004_webhook_send_times`` comes from another branch
(renumbered at merge if needed).
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("iron_kyc", "0004_webhook_send_times"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="customer",
            options={
                "ordering": ("-created_at", "-pk"),
                "permissions": [
                    (
                        "forget_customer",
                        "Can forget a customer (delete what is stored about them)",
                    )
                ],
                "verbose_name": "customer",
                "verbose_name_plural": "customers",
            },
        ),
    ]
