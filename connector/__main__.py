from connector.harness.cli import main

raise SystemExit(main())
