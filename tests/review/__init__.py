"""Regression tests for the security review's findings (docs/security.md), one file each."""
