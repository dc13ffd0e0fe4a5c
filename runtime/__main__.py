"""`python -m runtime`: the `mnet` command line."""

from runtime.cli import main

main()
