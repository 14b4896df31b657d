"""Database access: connection strings, the shared pool, the embedded server, locks."""
