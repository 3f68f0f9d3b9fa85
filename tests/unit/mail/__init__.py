"""Unit tests of the mail layer: no servers, no database."""
