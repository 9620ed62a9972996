"""`gatekeeper token new NAME --role ROLE`: a new admin token, and the access-file entry that admits it.

The token is printed once, for the caller to keep (e.g. in a Kubernetes Secret); the access file
holds only its SHA-256.
"""

from __future__ import annotations

import argparse
from typing import Any

from service.access import hash_token, new_token


def add_commands(commands: Any) -> None:
    token = commands.add_parser("token", help="make admin tokens for the access file")
    sub = token.add_subparsers(dest="token_command", required=True)
    p = sub.add_parser("new", help="print a new token and the [[token]] entry to add to the access file")
    p.add_argument("name", help="who holds it; recorded in the audit trail")
    p.add_argument("--role", choices=["reader", "writer"], required=True)


def run(args: argparse.Namespace) -> int:
    token = new_token()
    print(f"token (give it to {args.name}; it is not stored anywhere):\n  {token}\n")
    print("add to the access file (GATEKEEPER_ADMIN_ACCESS):\n")
    print(f'[[token]]\nname = "{args.name}"\nrole = "{args.role}"\nsha256 = "{hash_token(token)}"')
    return 0
