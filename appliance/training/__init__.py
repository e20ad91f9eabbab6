"""Training: what to train next (``logs``, ``plan``), the datasets that do it (``curate``,
``dedup``), external datasets brought by USB (``imports``), and the adapters themselves:
recipes (``recipe``), curated datasets as the trainer reads them (``datasets``), one LoRA
run (``fit``; several GPUs through ``distributed``), GGUF copies (``gguf``) and the whole
``cra train`` job (``trainer``).

Above the harness in the layers: it reads what ``harness`` runs wrote and may use its
prompt builders, never the reverse.
"""
