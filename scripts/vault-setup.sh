#!/usr/bin/env bash
# Configure a Vault (or OpenBao) for the shop platform from scratch. Safe to run again: what
# exists is kept (secrets are never overwritten), policies and roles are rewritten.
#
#   VAULT_ADDR, VAULT_TOKEN   where, and an admin token (required)
#   VAULT_CLI                 `vault` or `bao` (default: whichever is on PATH)
#
# Database secrets engine (skipped unless SHOP_DB_HOST is set):
#   SHOP_DB_HOST              host:port as Vault reaches PostgreSQL (e.g. the RDS endpoint)
#   SHOP_DB_ADMIN_USER/_PASSWORD  a role with CREATEROLE that can grant on the databases
#   SHOP_DB_SSLMODE           default require
#   SHOP_DB_PREFIX            database name prefix (tests); default none
#   SHOP_DB_SERVICES          which services get a database role (default all four)
#   SHOP_DB_DEFAULT_TTL, SHOP_DB_MAX_TTL   lease times (default 1h, 24h)
#   SHOP_DB_MAX_OPEN_CONNECTIONS           Vault's own connections per database (default 2)
# Kubernetes auth (roles always; the config only when SHOP_K8S_HOST is set):
#   SHOP_K8S_HOST, SHOP_K8S_CA_FILE, SHOP_K8S_NAMESPACE (default shop)
# Initial secrets (generated when absent): SHOP_ADMIN_PASSWORD, SHOP_SERVICE_TOKEN_SECRET.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
policies="$here/deploy/vault/policies"
CLI=${VAULT_CLI:-$(command -v vault || command -v bao || true)}
[ -n "$CLI" ] || { echo "vault-setup: no vault or bao CLI on PATH (set VAULT_CLI)" >&2; exit 2; }
: "${VAULT_ADDR:?set VAULT_ADDR}" "${VAULT_TOKEN:?set VAULT_TOKEN (an admin token)}"
export VAULT_ADDR VAULT_TOKEN BAO_ADDR="$VAULT_ADDR" BAO_TOKEN="$VAULT_TOKEN"
command -v openssl >/dev/null || { echo "vault-setup: openssl is needed" >&2; exit 2; }

namespace=${SHOP_K8S_NAMESPACE:-shop}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say() { echo "vault-setup: $*"; }

# service name : Kubernetes service account / AppRole / auth role : database
services="users:user-service:userdb products:product-service:productdb
orders:order-service:orderdb payments:payment-service:paymentdb"

mounted() { # mounted secrets|auth PATH/
  local list
  list=$("$CLI" "$1" list -format=json)
  [[ "$list" == *"\"$2\""* ]]
}

# --- KV v2 and the platform's secrets ---------------------------------------------------------
mounted secrets secret/ || "$CLI" secrets enable -path=secret -version=2 kv
if ! "$CLI" kv get -field=SHOP_SERVICE_TOKEN_SECRET secret/shop/internal >/dev/null 2>&1; then
  "$CLI" kv put -cas=0 secret/shop/internal \
    SHOP_SERVICE_TOKEN_SECRET="${SHOP_SERVICE_TOKEN_SECRET:-$(openssl rand -base64 48 | tr -d '\n')}" >/dev/null
  say "secret/shop/internal created"
fi
if ! "$CLI" kv get -field=SHOP_JWT_PRIVATE_KEY secret/shop/users >/dev/null 2>&1; then
  # The key ring of shop.users.keys: current and next Ed25519 keys, no previous ones yet.
  openssl genpkey -algorithm ed25519 -out "$tmp/current.pem"
  openssl genpkey -algorithm ed25519 -out "$tmp/next.pem"
  admin=${SHOP_ADMIN_PASSWORD:-$("$CLI" kv get -field=SHOP_ADMIN_PASSWORD secret/shop/users 2>/dev/null \
    || openssl rand -base64 24 | tr -d '\n')}
  printf '%s' "$admin" > "$tmp/admin"
  "$CLI" kv put secret/shop/users \
    SHOP_JWT_PRIVATE_KEY=@"$tmp/current.pem" \
    SHOP_JWT_NEXT_PRIVATE_KEY=@"$tmp/next.pem" \
    SHOP_JWT_PREVIOUS_KEYS='[]' \
    SHOP_JWT_ROTATED_AT="$(date +%s)" \
    SHOP_ADMIN_PASSWORD=@"$tmp/admin" >/dev/null
  say "secret/shop/users created (signing keys, admin password)"
fi

# --- policies: one per service, least privilege ------------------------------------------------
for f in "$policies"/*.hcl; do
  "$CLI" policy write "$(basename "$f" .hcl)" "$f" >/dev/null
done
say "policies written: $(cd "$policies" && ls ./*.hcl | xargs -n1 basename | sed 's/.hcl$//' | tr '\n' ' ')"

# --- auth: Kubernetes (pods) and AppRole (anything else), one role per service ----------------
mounted auth kubernetes/ || "$CLI" auth enable kubernetes >/dev/null
mounted auth approle/ || "$CLI" auth enable approle >/dev/null
if [ -n "${SHOP_K8S_HOST:-}" ]; then
  "$CLI" write auth/kubernetes/config kubernetes_host="$SHOP_K8S_HOST" \
    ${SHOP_K8S_CA_FILE:+kubernetes_ca_cert=@"$SHOP_K8S_CA_FILE"} >/dev/null
fi
for entry in $services; do
  IFS=: read -r svc account _ <<<"$entry"
  # Pods log in with a projected service-account token of audience "vault" (docs/deploy.md).
  "$CLI" write "auth/kubernetes/role/$account" \
    bound_service_account_names="$account" bound_service_account_namespaces="$namespace" \
    audience=vault token_policies="shop-$svc" token_ttl=1h token_max_ttl=4h >/dev/null
  "$CLI" write "auth/approle/role/$account" \
    token_policies="shop-$svc" token_ttl=1h token_max_ttl=4h \
    secret_id_ttl=720h token_num_uses=0 >/dev/null
done
# The storefront (deploy/k8s/base/storefront/): the internal secret only, no database.
"$CLI" write auth/kubernetes/role/storefront \
  bound_service_account_names=storefront bound_service_account_namespaces="$namespace" \
  audience=vault token_policies=shop-storefront token_ttl=1h token_max_ttl=4h >/dev/null
"$CLI" write auth/approle/role/storefront \
  token_policies=shop-storefront token_ttl=1h token_max_ttl=4h \
  secret_id_ttl=720h token_num_uses=0 >/dev/null
# The backup CronJob (deploy/k8s/base/backup/): a database login for pg_dump, the raft snapshot.
"$CLI" write auth/kubernetes/role/shop-backup \
  bound_service_account_names=shop-backup bound_service_account_namespaces="$namespace" \
  audience=vault token_policies=shop-backup token_ttl=1h token_max_ttl=2h >/dev/null
say "auth roles written (kubernetes, approle): user-service product-service order-service payment-service storefront; kubernetes: shop-backup"

# --- database secrets engine: short-lived PostgreSQL logins per service -----------------------
if [ -n "${SHOP_DB_HOST:-}" ]; then
  : "${SHOP_DB_ADMIN_USER:?set SHOP_DB_ADMIN_USER}"
  mounted secrets database/ || "$CLI" secrets enable database >/dev/null
  wanted=${SHOP_DB_SERVICES:-users products orders payments}
  for entry in $services; do
    IFS=: read -r svc _ db <<<"$entry"
    case " $wanted " in *" $svc "*) ;; *) continue ;; esac
    db="${SHOP_DB_PREFIX:-}$db"
    owner="${db}_owner"
    "$CLI" write "database/config/$db" \
      plugin_name=postgresql-database-plugin \
      connection_url="postgresql://{{username}}:{{password}}@$SHOP_DB_HOST/$db?sslmode=${SHOP_DB_SSLMODE:-require}" \
      username="$SHOP_DB_ADMIN_USER" password="${SHOP_DB_ADMIN_PASSWORD:-}" \
      max_open_connections="${SHOP_DB_MAX_OPEN_CONNECTIONS:-2}" \
      allowed_roles="$svc" >/dev/null
    # Each login is a member of a NOLOGIN owner role and acts as it (SET role), so tables
    # its migrations create belong to the owner and outlive the login; revoking hands
    # anything the login still owns to the owner and drops it.
    cat > "$tmp/role.json" <<EOF
{
  "db_name": "$db",
  "default_ttl": "${SHOP_DB_DEFAULT_TTL:-1h}",
  "max_ttl": "${SHOP_DB_MAX_TTL:-24h}",
  "creation_statements": [
    "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$owner') THEN CREATE ROLE \"$owner\" NOLOGIN; END IF; END \$\$;",
    "GRANT CONNECT, CREATE, TEMPORARY ON DATABASE \"$db\" TO \"$owner\"; GRANT USAGE, CREATE ON SCHEMA public TO \"$owner\";",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \"$owner\"; GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO \"$owner\";",
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE \"$owner\"; ALTER ROLE \"{{name}}\" SET role = '$owner';"
  ],
  "revocation_statements": [
    "REASSIGN OWNED BY \"{{name}}\" TO \"$owner\"; DROP OWNED BY \"{{name}}\"; DROP ROLE IF EXISTS \"{{name}}\";"
  ]
}
EOF
    "$CLI" write "database/roles/$svc" @"$tmp/role.json" >/dev/null
    say "database role $svc -> $db (owner $owner)"
  done
fi
say "done"
