import sys

from jobs.latency_tickets.main import main

sys.exit(main())
