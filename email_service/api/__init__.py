"""HTTP only: blueprints, schemas, auth and tenancy, problem+json."""
