"""Tests of django_iron_kyc.testing: the fake Iron (one module per fake/ module), the signer
and event builder, and the kit around them (factories, mirror helpers, the pytest plugin,
the standalone runner)."""
