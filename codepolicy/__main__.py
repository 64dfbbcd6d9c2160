from codepolicy.cli import main

raise SystemExit(main())
