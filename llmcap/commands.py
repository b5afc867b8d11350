"""Registration of the subcommands whose code lives in reports/ and serving/ (kept out of cli.py's imports)."""
REGISTER: list = []
