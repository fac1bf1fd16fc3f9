"""Local tooling behind the ``shop`` command and the tests: find PostgreSQL, run the services."""
