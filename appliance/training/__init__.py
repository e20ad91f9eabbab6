"""Training data from the raw DB: what to train next (``logs``, ``plan``), the datasets that
do it (``curate``, ``dedup``), and external datasets brought by USB (``imports``).

Above the harness in the layers: it reads what ``harness`` runs wrote and may use its
prompt builders, never the reverse.
"""
