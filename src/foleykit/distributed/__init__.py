"""Distributed batch work: embedding extraction and batch generation over a manifest.

``batch.py`` is the single-process batch generator; ``ray_jobs.py`` runs both jobs on a Ray
cluster (optional extra: ``pip install ray``) with actor pools whose workers load their models once.
Nothing here imports Ray until a Ray function is called.
"""
