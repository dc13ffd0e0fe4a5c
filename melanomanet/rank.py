"""What torchrun runs on each rank: `mnet train`'s command line (`python -m melanomanet.rank ARGS`), apart from
the trainer itself so that the trainer and the CLI do not import each other."""

import sys

from melanomanet.cli import app

if __name__ == "__main__":
    app(["train", *sys.argv[1:]], prog_name="python -m melanomanet.rank")
