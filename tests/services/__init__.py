"""Tests of django_iron_kyc.services, one module per services module.

Everything remote goes through the fake Iron (the ``iron`` fixture), so "nothing was sent to
Iron" is checked on the requests it recorded.
"""
