"""The load benchmark of the platform: scenarios driven by wrk, baselines, targets (issue 8)."""
