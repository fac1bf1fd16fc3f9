"""Product service (port 5001): the catalogue and its stock, with per-order reservations."""
