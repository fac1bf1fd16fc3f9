"""The storefront: a backend-for-frontend, GraphQL at /graphql over the services' REST APIs."""
