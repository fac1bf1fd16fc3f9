from __future__ import annotations

from pydantic import Field, SecretStr

from shop.common.settings import ServiceSettings


class NotificationsSettings(ServiceSettings):
    service_name: str = "notification-service"
    port: int = 5005  # /metrics and liveness only
    users_url: str = "http://127.0.0.1:5000"
    # Where mail goes: `make run`'s local sink by default; in Kubernetes an SMTP relay from
    # configuration (Amazon SES's SMTP endpoint, port 587 with STARTTLS and SMTP credentials).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=8025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    # Each step of connecting (aiosmtplib's), and a mail's whole transaction (SmtpSender.send).
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    # One SMTP connection per worker, kept (notifications/smtp.py, SmtpSender): checked
    # with a NOOP after this long idle, replaced after this many mails; the EHLO name is given,
    # not looked up (socket.getfqdn in a thread, per connection).
    smtp_idle_check_seconds: float = Field(default=5.0, ge=0)
    smtp_messages_per_connection: int = Field(default=100, ge=1)
    smtp_local_hostname: str = "shop-notifications"
    # Nothing waits on mail: while the SMTP relay is down a mail is retried every 30 s at most,
    # for about half an hour (1+2+4+8+16 s, then 30 s each: 60 attempts) before its event goes
    # to the DLQ; a relay that refuses the mail itself (5xx) sends it there at once.
    event_max_attempts: int = Field(default=60, ge=1)
    event_retry_cap_seconds: float | None = Field(default=30.0, gt=0)
    mail_from: str = "shop <no-reply@shop.local>"
    # The inbox (handled event ids, so a redelivered event sends no second email): a Redis.
    # Unset or unreachable: every event is still mailed, at least once (docs/events.md).
    redis_url: str | None = None
    inbox_key_prefix: str = "shop:inbox:"
    inbox_retention_hours: int = Field(default=168, ge=1)
