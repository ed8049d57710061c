from obsloop.cli import main

raise SystemExit(main())
