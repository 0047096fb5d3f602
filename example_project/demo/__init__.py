"""The demo and the exploring server: ``iron_kyc_demo`` and ``iron_kyc_devserver``."""
