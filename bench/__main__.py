"""``python -m bench``: the benchmark suite (see ``bench/_suite.py``)."""

from bench._suite import main

raise SystemExit(main())
