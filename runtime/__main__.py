"""`python -m runtime`: the `mnet` command line."""

from runtime.app.cli import main

main()
