"""Metrics: the one module that defines them (:mod:`.metrics`) and the exporter that serves the
queue metrics read from Redis (:mod:`.exporter`)."""
