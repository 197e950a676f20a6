"""Alembic revisions, oldest first; each must keep the schema equal to ``store/schema.py``."""
