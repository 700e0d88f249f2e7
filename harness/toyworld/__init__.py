"""The procedural toy world: scenes, captions, renderer, vocabulary, the rule-based checker and
the ``zoo:`` paths. Ground layer: metrics, suites and generators may use it; it imports none of
them (training tools live in :mod:`harness.zoo`)."""
