"""``python -m ussnb.cli ...`` = the ``ussnb`` command."""
import sys

from . import main

sys.exit(main())
