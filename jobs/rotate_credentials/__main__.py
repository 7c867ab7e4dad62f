import sys

from jobs.rotate_credentials.main import main

sys.exit(main())
