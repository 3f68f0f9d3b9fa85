"""Folder management: create, rename, subscribe, delete; locally at once, then on IMAP."""
