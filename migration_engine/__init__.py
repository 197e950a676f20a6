"""peppol-migrate: moves Peppol registrations of many parties to and from eConnect's PSB.

``__version__`` is the one place the version is written: pyproject.toml reads it
(setuptools' dynamic version), so a release changes this line only.
"""

__version__ = "0.1.0"
