"""The packaged defaults: this folder is installed as ``migration_engine.defaults``.

``default.toml`` (every setting with its meaning) and ``profiles/*.toml`` (the shipped
profiles) are read at run time with ``importlib.resources``; pyproject.toml maps the package
to this folder so the repository's top-level ``config/`` stays their one source. This file
makes the folder a regular package, which an editable install needs to import it.
"""
