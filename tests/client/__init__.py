"""Tests of django_iron_kyc.client and its private helpers (_client_options, _http_errors):
requests and answers, errors, options, and the transport over real sockets."""
