"""``python -m appliance.cli``: the ``cra`` command without the console script."""

import sys

from appliance.cli import main

sys.exit(main())
