"""`python -m frontend --api-url http://host:8000`: the dashboard as its own process."""

from frontend.app import main

raise SystemExit(main())
