"""Allow ``python -m syncpipe``."""

from syncpipe.cli import main

main()
