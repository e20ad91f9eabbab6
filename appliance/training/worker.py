"""One process of a several-GPU run: ``accelerate launch -m appliance.training.worker PLAN OUTCOME``.

Reads the ``FitPlan`` JSON, runs ``fit`` and, on rank 0, writes the ``FitOutcome`` JSON
that ``appliance.training.distributed.launch`` reads back.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from appliance.atomic import write_atomic
from appliance.training.fit import FitPlan, fit


def main(argv: list[str]) -> int:
    plan_file, outcome_file = Path(argv[0]), Path(argv[1])
    outcome = fit(FitPlan.from_json(plan_file.read_text(encoding="utf-8")))
    if int(os.environ.get("RANK", "0")) == 0:
        write_atomic(outcome_file, json.dumps(outcome.to_dict(), indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover - run by accelerate
    sys.exit(main(sys.argv[1:]))
