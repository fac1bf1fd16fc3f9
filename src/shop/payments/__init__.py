"""Payment service (port 5003): payments through a provider interface, refunds."""
