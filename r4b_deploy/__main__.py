import sys

from r4b_deploy.cli.main import main

sys.exit(main())
