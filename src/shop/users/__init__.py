"""User service (port 5000): registration, login (JWT), user records; publishes the JWKS."""
