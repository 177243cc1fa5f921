"""Experiments as resumable runs: the run store (:mod:`~trainattn.protocols.store`), LAMA-CKL,
TemporalWiki, meta-training, grids of methods × seeds, data parallelism."""
