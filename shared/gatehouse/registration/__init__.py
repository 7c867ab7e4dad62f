"""Registration: keep one Apigee proxy per opted-in Cloud Run service.

``plan`` is pure (desired + current -> actions); ``executor`` applies a plan through the ports;
``service`` reads the world, plans and executes for one service or a whole fleet.
"""
