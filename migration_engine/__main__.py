"""``python -m migration_engine``: the same as the ``peppol-migrate`` command."""

from migration_engine.cli.main import main

raise SystemExit(main())
