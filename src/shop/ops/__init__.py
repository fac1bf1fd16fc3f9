"""Operations on a running platform, production code: backups, restores, retention, Vault's
snapshots and the cross-database consistency check (the ``shop backup``/``restore``/
``prune-backups``/``vault-restore``/``check-consistency`` commands, also what the backup CronJob
runs from the platform's image).

Split by concern: ``databases`` (which server and databases), ``pgtools`` (finding and running
pg_dump/pg_restore), ``manifest`` (a backup's format and its verification), ``backup``,
``restore``, ``retention``, ``consistency``, ``vault_snapshot`` (Vault's raft snapshot in every
backup, age-encrypted) and ``commands`` (the CLI). Nothing here imports ``shop.devtools``: in
production a command needs an explicit database URL and never falls back to a local or embedded
server (an import-linter contract keeps it so). The timed recovery drill, which starts a whole
local platform, is a development tool: ``shop.devtools.drill``.
"""
