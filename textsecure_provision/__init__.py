"""textsecure-provision: link a secondary device to an account by QR code."""

__version__ = "0.1.0"
