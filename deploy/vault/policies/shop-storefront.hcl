# storefront (the GraphQL BFF and pages): least privilege. It has no database and signs
# nothing: it reads the platform's internal secret, which production settings require, and
# nothing else (the default policy adds token self-lookup/renewal).

# SHOP_SERVICE_TOKEN_SECRET (the HS256 key of service-to-service tokens).
path "secret/data/shop/internal" {
  capabilities = ["read"]
}
