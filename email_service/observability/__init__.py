"""JSON logging, request context, metrics."""
