"""peppol-migrate: moves Peppol registrations of many parties to and from eConnect's PSB."""

__version__ = "0.1.0"
