"""Rotation: service-account keys and generated secrets held in Secret Manager.

``target`` reads the contract (label ``gatehouse-rotate``, ``gatehouse-*`` annotations); ``plan``
is the pure state machine (create -> set -> test -> finish -> retire on version aliases and
etag-guarded annotations; its docstring explains crash safety, what ``latest`` is (the newest
version whatever its state) and how an abandoned rotation keeps it readable with a mirror);
``executor`` applies it one step at a time through ``ports``; ``job.run`` runs every target of a
shard and returns the auditor's ``report``. ``generate``, ``consumers``, ``shard``, ``state`` and
``settings`` are pure helpers; ``verify`` tests new credentials with google-auth.
"""
