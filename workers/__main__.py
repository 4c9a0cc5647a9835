"""``python -m workers``: the same as ``qtc worker``."""

from starters.cli_deal import worker

if __name__ == "__main__":
    worker()
