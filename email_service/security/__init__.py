"""Credentials, tokens and the hosts we may dial: standard library and crypto libraries only."""
