"""What every service shares: settings, logging, metrics, database, auth, HTTP, errors, app factory.

Nothing here imports a service package (an import-linter contract checks it).
"""
