import sys

from octopus.cli import main

sys.exit(main())
