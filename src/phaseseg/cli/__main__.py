import sys

from phaseseg.cli import main

sys.exit(main())
