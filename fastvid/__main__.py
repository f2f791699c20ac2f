import sys

from fastvid.cli import main

sys.exit(main())
