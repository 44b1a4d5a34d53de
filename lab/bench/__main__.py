import sys

from lab.bench.pipeline import main

sys.exit(main())
