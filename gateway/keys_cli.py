"""`anvil keys create|list|revoke`, and the access rules of `anvil serve`: open mode on loopback,
keys required elsewhere unless the operator says --open."""

import argparse
import ipaddress
import sys
from pathlib import Path

from gateway.store import ApiKeys, database_url, open_engine


def store_arguments(parser: argparse.ArgumentParser, default_data_dir: Path) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=default_data_dir,
        help="metadata (metadata.sqlite unless --database-url), checkpoints and model caches (default: %(default)s)",
    )
    parser.add_argument(
        "--database-url", default=None, metavar="URL",
        help="a SQLAlchemy database URL, e.g. postgresql://user@host/anvil (default: $ANVIL_DATABASE_URL, "
        "else SQLite in --data-dir)",
    )


def add_keys_commands(commands, default_data_dir: Path) -> None:
    keys = commands.add_parser("keys", help="create, list and revoke users' API keys")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="print a new key for a user (the user is made on their first key)")
    create.add_argument("--user", required=True, metavar="NAME")
    store_arguments(create, default_data_dir)
    listing = actions.add_parser("list", help="every key: its id, user, first characters, when made and revoked")
    store_arguments(listing, default_data_dir)
    revoke = actions.add_parser("revoke", help="refuse a key from now on (its user and their data stay)")
    revoke.add_argument("key_id", metavar="KEY_ID")
    store_arguments(revoke, default_data_dir)


def run_keys_command(args: argparse.Namespace) -> None:
    engine = open_engine(database_url(args.data_dir, args.database_url))
    try:
        keys = ApiKeys(engine)
        if args.keys_command == "create":
            if not args.user.strip():
                sys.exit("--user needs a name")
            api_key, row = keys.create(args.user.strip())
            print(api_key)
            print(f"{row.key_id} for user {row.user_name} ({row.user_id}); the key is shown only now", file=sys.stderr)
        elif args.keys_command == "list":
            print(f"{'KEY_ID':<18} {'USER':<20} {'USER_ID':<22} {'PREFIX':<12} {'CREATED':<33} REVOKED")
            for row in keys.keys():
                print(
                    f"{row.key_id:<18} {row.user_name:<20} {row.user_id:<22} {row.prefix + '…':<12} "
                    f"{row.created:<33} {row.revoked_at or '-'}"
                )
        else:
            row = keys.revoke(args.key_id)
            if row is None:
                sys.exit(f"no key {args.key_id!r} (see `anvil keys list`)")
            print(f"{row.key_id} of user {row.user_name} revoked at {row.revoked_at}")
    finally:
        engine.dispose()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def refuse_without_keys(parser: argparse.ArgumentParser, database: str, host: str) -> None:
    """Serving beyond this machine with keys required and none to accept would refuse everyone."""
    engine = open_engine(database)
    try:
        active = ApiKeys(engine).active_keys()
    finally:
        engine.dispose()
    if active == 0:
        parser.error(
            f"--host {host} is not a loopback address, so only keys made with `anvil keys create` are "
            "accepted, and there are none: create one with `anvil keys create --user NAME` (same "
            "--data-dir / --database-url), or pass --open to let any tml- key in as its own user"
        )
