"""The processes gatehouse runs on Google Cloud: two CloudEvent functions and three Cloud Run jobs.

They live in the package so that the one-machine stack (``gatehouse local up``, installed from the
wheel) runs exactly the code production runs; ``functions/main.py`` and ``jobs/<job>/main.py`` in
the repository are the thin scripts the image starts, and only re-export these.
"""
