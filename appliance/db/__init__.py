"""The raw database: one SQLite file, ``CRA_HOME/var/cra.db``.

``core`` opens it (WAL, foreign keys, one writer with ``BEGIN IMMEDIATE``) and applies
``migrations``; each table group keeps its SQL in one module (``corpus`` for repos,
eras and commits).
"""

from appliance.db.core import Database, open_db

__all__ = ["Database", "open_db"]
