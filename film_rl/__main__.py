import sys

from film_rl.cli import main

sys.exit(main())
