"""Offline checks of the monitoring and logging configuration under deploy/."""
