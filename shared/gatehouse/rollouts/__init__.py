"""Rollouts: fleet-wide changes (profiles file, gatehouse render version, bundle-relevant settings)
go out in health-gated waves instead of all at once.

``fleet`` names a configuration; ``waves`` orders the fleet into waves; ``gate`` judges a proxy's
window after its deploy against its window before; ``model`` is the rollout record and its state
machine. All four are pure. ``engine`` drives a rollout through the ports.
"""
