"""Production operations: backups of the platform's state, restores, recovery drills."""
