"""HTTP plumbing every blueprint shares: auth and tenancy, request bodies, rate limits,
CORS, request hooks, problem+json, OpenAPI details and common schemas."""
