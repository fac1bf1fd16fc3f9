"""Operations on a running platform, production code: backups, restores, retention and the
cross-database consistency check (the ``shop backup``/``restore``/``prune-backups``/
``check-consistency`` commands, also what the backup CronJob runs from the platform's image).

Split by concern: ``databases`` (which server and databases), ``pgtools`` (finding and running
pg_dump/pg_restore), ``manifest`` (a backup's format and its verification), ``backup``,
``restore``, ``retention``, ``consistency`` and ``commands`` (the CLI). Nothing here imports
``shop.devtools``: in production a command needs an explicit database URL and never falls back
to a local or embedded server (an import-linter contract keeps it so).
"""
