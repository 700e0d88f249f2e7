"""The embedded default: a procedural toy world and the small models trained on it, so the
whole loop runs offline with metrics that mean something."""
