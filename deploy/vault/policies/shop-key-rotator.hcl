# `shop rotate-keys` run by an operator or a scheduled job: rotate the user service's signing
# keys (a check-and-set write of a new version of secret/shop/users). Nothing else.
path "secret/data/shop/users" {
  capabilities = ["read", "create", "update"]
}
