"""Services: the work behind each command, callable from Python without the CLI."""
