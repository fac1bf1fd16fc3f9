"""The GraphQL schema (API.md's minimum, orders with lines, the cart and the admin's
operations), resolved over REST.

Nested reads are batched per request by dataloaders over the services' batch endpoints
(``GET /api/v1/products?ids=`` and ``GET /api/v1/payments?order_ids=``), so
``me { orders(limit: 20) { items { lines { product { name } } payment { status } } } }`` costs
four downstream calls (user, orders page, products, payments) whatever the page size and
however many lines the orders have: every line's product, and the current name of a line whose
order did not record one, come from the one products batch.

The package in three parts: ``context`` (the caller and the dataloaders), ``types`` (the
object types, resolving nested fields through the loaders) and ``schema`` (the root
operations, the limits and the error codes).
"""

from shop.storefront.graphql.context import Context
from shop.storefront.graphql.schema import Limits, build_schema, error_code, schema

__all__ = ["Context", "Limits", "build_schema", "error_code", "schema"]
