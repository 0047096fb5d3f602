from django_iron_kyc.models import Customer


def test_customer_can_be_created_from_iron_id_alone(db):
    import uuid

    customer = Customer.objects.create(iron_id=uuid.uuid4())
    assert customer.idempotency_key
    assert customer.status == ""
