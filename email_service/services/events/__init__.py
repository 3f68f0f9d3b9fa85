"""Staying current: the change feed, event names, webhooks and their deliveries."""
