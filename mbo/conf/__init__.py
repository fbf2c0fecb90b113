"""The Hydra config groups: the one place every default of ``mbo-run``, ``mbo-campaign`` and the
benchmarks is set (``config.yaml`` for ``mbo-run``, ``campaign.yaml`` for a campaign's settings)."""
