"""MIME: parse with limits, headers and charsets, bodies and parts, HTML, build."""
