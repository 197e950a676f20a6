"""Alembic environment and revisions of peppol-migrate's own schema.

Configured in code (``migration_engine.store.versioning``), no alembic.ini: the script
location is this package's directory. Run them with ``peppol-migrate db upgrade``.
"""
