"""Ray Tune searches over the ``reelgraph fit`` YAML: search spaces keyed by the CLI's dotted
keys (:mod:`~reelgraph.tune.space`), one Lightning fit per trial (:mod:`~reelgraph.tune.trial`),
the Tuner driver (:mod:`~reelgraph.tune.search`, ``reelgraph-tune``) and the best-config export
(:mod:`~reelgraph.tune.export`)."""
