"""python -m bench runs the benchmark."""

import sys

from bench.run import main

sys.exit(main())
