"""Sending over HTTP: compose and drafts, one-request sends, the outbox."""
