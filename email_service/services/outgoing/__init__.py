"""Sending: compose, drafts and their IMAP copies, the outbox, delivery, Sent copies."""
