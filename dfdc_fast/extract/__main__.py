import sys

from dfdc_fast.extract.cli import main

sys.exit(main())
