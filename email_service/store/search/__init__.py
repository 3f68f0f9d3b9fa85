"""Full-text search behind one interface: PostgreSQL tsvector + GIN, SQLite FTS5."""
