"""The storefront's bounds, declared once: the cart's size, and the cost of a GraphQL query.

A cart holds at most ``CART_MAX_LINES`` products and ``CART_MAX_QUANTITY`` of one product
(API.md, "Orders with lines"); ``shop.storefront.cart`` enforces them for the pages and GraphQL
alike, and the templates' inputs take their ``max`` from here.

Query cost: a bound on how many objects one query can make the BFF fetch.

Each field costs 1; a paged field (one with a ``limit`` argument) multiplies what is under it
by its page size: the literal given, the schema's default of 20 when absent, or the maximum of
100 when it comes from a variable (validation runs before variables are known). So
``products(limit: 100) { items { name } }`` costs about 200 and
``users(limit: 100) { orders(limit: 100) { items { product { name } } } }`` about 40 000.
Depth is bounded separately by Strawberry's ``QueryDepthLimiter``.
"""

from __future__ import annotations

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)

from shop.common.types import PAGE_LIMIT_MAX

CART_MAX_LINES = 50
CART_MAX_QUANTITY = 99

DEFAULT_PAGE = 20
MAX_PAGE = PAGE_LIMIT_MAX  # what the REST pages allow


def _page_size(node: FieldNode) -> int | None:
    for argument in node.arguments or ():
        if argument.name.value == "limit":
            value = argument.value
            if isinstance(value, IntValueNode):
                return max(1, min(int(value.value), MAX_PAGE))
            return MAX_PAGE
    return None


def selection_cost(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str] = frozenset(),
) -> int:
    if selection_set is None:
        return 0
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            children = selection_cost(selection.selection_set, fragments, seen)
            size = _page_size(selection)
            if size is None and selection.selection_set is not None and _is_paged_type(selection):
                size = DEFAULT_PAGE
            total += 1 + (size or 1) * children
        elif isinstance(selection, InlineFragmentNode):
            total += selection_cost(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in seen:  # cycles are another rule's error
                total += selection_cost(fragments[name].selection_set, fragments, seen | {name})
    return total


# Paged fields whose `limit` was left to its default.
PAGED_FIELDS = frozenset({"products", "orders", "users"})


def _is_paged_type(node: FieldNode) -> bool:
    return node.name.value in PAGED_FIELDS


def cost_rule(max_cost: int) -> type[ValidationRule]:
    """A validation rule refusing operations whose estimated cost is over ``max_cost``."""

    class CostLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.fragments = {
                d.name.value: d
                for d in context.document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: object) -> None:
            cost = selection_cost(node.selection_set, self.fragments)
            if cost > max_cost:
                self.report_error(
                    GraphQLError(
                        f"The query's estimated cost {cost} is over the limit of {max_cost}:"
                        " ask for smaller pages or fewer nested lists.",
                        node,
                    )
                )

    return CostLimit
