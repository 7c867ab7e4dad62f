"""gatehouse's benchmarks: ``python -m bench [cold_start|calls_per_service|noop_sweep|burst ...]``.

Each benchmark measures one figure of the registration path on the local stack, next to a
baseline measured in the same run, and says whether it meets its target. See ``bench/__main__.py``.
"""
