"""The bottom layer: exceptions and exit codes, secret redaction, connection-string parsing.

Everything else (settings, db, services, cli) may import it; it imports none of them.
"""
