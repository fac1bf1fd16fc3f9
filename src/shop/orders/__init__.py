"""Order service (port 5002): orders, placed by a saga across the product and payment services."""
