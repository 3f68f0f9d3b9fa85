"""Multi-tenant email backend."""

__version__ = "1.0.0"
