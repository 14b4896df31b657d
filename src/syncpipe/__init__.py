"""syncpipe: deploy a PostgreSQL/Supabase schema, load agent CSVs, resolve one master table."""

__version__ = "0.1.0"
