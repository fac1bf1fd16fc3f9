"""The platform's events (../shared/EVENTS.md, docs/events.md): a transactional outbox in every
service, a relay that publishes it to RabbitMQ, and idempotent consumers.

    service transaction ──INSERT outbox──▶ outbox table ──relay (confirms)──▶ shop.events
                                                                               │ topic, key = type
    consumer queue shop.<name> ◀────────────────────────────────────────────────┘
      └─ handler + INSERT inbox in one transaction, then ack; failures: retry queue, then DLQ

Modules: ``catalogue`` (the event types), ``outbox`` (tables, ``record``, ``emit``),
``broker`` (connection settings, topology), ``relay``, ``consumer``.
"""
