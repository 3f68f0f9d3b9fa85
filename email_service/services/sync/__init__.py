"""Sync: a run of one account (lock, engine, outcome), its folders, ingest, state and schedule."""
