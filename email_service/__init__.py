"""Multi-tenant email backend."""
