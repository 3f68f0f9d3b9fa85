"""IMAP (RFC 9051/3501): codec, response parser, connection, session, fetch, folders."""
