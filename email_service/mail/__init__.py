"""Mail protocol and format: IMAP, SMTP, MIME parsing, HTML sanitizing; no database."""
