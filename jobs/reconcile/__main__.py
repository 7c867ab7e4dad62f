import sys

from jobs.reconcile.main import main

sys.exit(main())
