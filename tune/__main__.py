"""``python -m reelgraph.tune``: the same as ``reelgraph-tune`` (:mod:`reelgraph.tune.search`)."""
from reelgraph.tune.search import main

raise SystemExit(main())
