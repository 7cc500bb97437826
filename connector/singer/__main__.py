"""``python -m connector.singer tap|target --connector ID [Singer options]``."""

from connector.singer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
