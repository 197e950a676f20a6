"""Alembic revisions, oldest first; each must keep the schema equal to ``migration_engine/store/schema.py``."""
