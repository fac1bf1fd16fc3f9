# notifications (the email worker): least privilege. The internal secret (service tokens, to
# read a customer's address at the user service; SHOP_AMQP_URL, the broker) and its SMTP login.

path "secret/data/shop/internal" {
  capabilities = ["read"]
}

# SHOP_SMTP_USERNAME, SHOP_SMTP_PASSWORD (Amazon SES SMTP credentials in production).
path "secret/data/shop/notifications" {
  capabilities = ["read"]
}
