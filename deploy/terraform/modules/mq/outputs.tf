output "amqp_endpoint" {
  description = "amqps://host:5671 of the broker (SHOP_AMQP_URL adds the user and password)."
  value       = aws_mq_broker.this.instances[0].endpoints[0]
}

output "username" {
  description = "The broker's application user."
  value       = "shop"
}

output "password" {
  description = "Its password: put SHOP_AMQP_URL into Vault (secret/shop/internal) from it."
  value       = random_password.mq.result
  sensitive   = true
}
