"""Tests of django_iron_kyc.admin, one module per admin module.

Everything remote goes through the fake Iron (``fake_iron``), so "nothing was sent to Iron" is
checked on the requests it recorded.
"""
