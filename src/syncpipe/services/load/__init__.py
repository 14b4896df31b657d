"""Loading CSV files into their tables: stream, validate, reject, upsert, record."""
