"""`python -m drawai.bench`: see drawai/bench/cli.py."""

import sys

from drawai.bench.cli import main

if __name__ == "__main__":  # a spawned measurement process imports this module too, and must not run the bench
    sys.exit(main())
