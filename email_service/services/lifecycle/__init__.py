"""What happens to stored mail over time: per-tenant blob spaces, deletion, export."""
