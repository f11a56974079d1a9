"""Results as files and text: run reports (CSV, console tables, plots) and the docs' tables.

Run reports, written by the callbacks and the demo: ``csv_files`` (``forgetting.csv``,
``wiseft.csv``), ``console`` (the tables printed at fit end and by the demo) and ``plots``
(``forgetting.png``, ``wiseft.png``, the demo's ``comparison.png``); every file goes through
``ldifs_lightning.atomic.atomic_write``.

Measured numbers in the README, docs and model card are rendered from the JSON runs write.

Every measured table (and every sentence quoting a measured number) in ``README.md``,
``docs/demo.md`` and ``ldifs_lightning/pretrained/MODEL_CARD.md`` sits between marker comments and
is generated from committed JSON by

    python -m ldifs_lightning.reporting.render           # rewrite the marked regions
    python -m ldifs_lightning.reporting.render --check   # exit 1, naming each stale region

Modules: ``markdown`` (tables), ``regions`` (marked regions of a text), ``demo_text``,
``card_text`` and ``benchmark_text`` (one JSON kind -> Markdown each), ``render`` (which region of
which file comes from which JSON, and the command line).
"""
