# product-service: least privilege. Read the platform's internal secret, lease credentials for its own
# database, renew and revoke only those leases. Nothing else: no listing, no other service's
# paths, no sys/ beyond its own leases (the default policy adds token self-lookup/renewal).

# SHOP_SERVICE_TOKEN_SECRET (the HS256 key of service-to-service tokens).
path "secret/data/shop/internal" {
  capabilities = ["read"]
}

# Dynamic PostgreSQL credentials for its own database only.
path "database/creds/products" {
  capabilities = ["read"]
}

# Renew and revoke its own database leases (lease ids start with the creds path).
path "sys/leases/renew" {
  capabilities = ["update"]
  allowed_parameters = {
    "lease_id"  = ["database/creds/products/*"]
    "increment" = []
  }
}
path "sys/leases/revoke" {
  capabilities = ["update"]
  allowed_parameters = {
    "lease_id" = ["database/creds/products/*"]
  }
}
