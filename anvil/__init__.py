"""Pieces shared by the gateway, the trainer and the sampler: base models and internal types."""
