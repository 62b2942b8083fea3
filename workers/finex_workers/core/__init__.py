"""The bottom layer: queue names, our Redis key names, the error types, the pure formulas and
the settings object. It imports nothing else of the project and does no I/O."""
