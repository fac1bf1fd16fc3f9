"""shop: an e-commerce platform as four microservices (users, products, orders, payments)."""
