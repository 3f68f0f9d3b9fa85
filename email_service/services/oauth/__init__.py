"""OAuth2 mailboxes: providers, stored tokens and their refresh, onboarding (docs/oauth2.md)."""
