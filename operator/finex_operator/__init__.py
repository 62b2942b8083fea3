"""Kopf operator that runs a FinexWorkerPool as one Deployment per queue."""
