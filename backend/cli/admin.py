"""`prunescape migrate` and `prunescape token create|list|revoke`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    migrate = subparsers.add_parser(
        "migrate", help="create / upgrade the database schema (alembic upgrade head)"
    )
    migrate.set_defaults(func=_migrate)

    token = subparsers.add_parser(
        "token", help="API tokens (PRUNESCAPE_AUTH=writes: for writes; =all: for reads too)"
    )
    actions = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a token and print it once")
    create.add_argument("name")
    create.add_argument(
        "--admin",
        action="store_true",
        help="may also cancel, extend and delete other people's studies and retry their runs",
    )
    create.set_defaults(func=_token_create)
    listing = actions.add_parser("list", help="list tokens (names and dates, never the tokens)")
    listing.set_defaults(func=_token_list)
    revoke = actions.add_parser("revoke", help="revoke the token called NAME")
    revoke.add_argument("name")
    revoke.set_defaults(func=_token_revoke)


def _migrate(_args: argparse.Namespace) -> int:
    from backend.db.migrate import upgrade
    from backend.settings import get_settings

    settings = get_settings()
    upgrade(settings)
    print(f"database at head: {_safe_url(str(settings.database_url))}")
    return 0


def _safe_url(url: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


def _token_create(args: argparse.Namespace) -> int:
    from backend.cli.main import CliError
    from backend.db.session import session_scope
    from backend.services.errors import ServiceError
    from backend.services.tokens import create_token

    try:
        with session_scope() as session:
            token = create_token(session, args.name, admin=args.admin)
    except ServiceError as exc:
        raise CliError(exc.message) from None
    print(token)
    kind = "admin token" if args.admin else "token"
    print(f"{kind} {args.name!r} created; it is shown only this once", file=__import__("sys").stderr)
    return 0


def _token_list(_args: argparse.Namespace) -> int:
    from backend.db.session import session_scope
    from backend.services.tokens import list_tokens

    with session_scope() as session:
        for token in list_tokens(session):
            state = f"revoked {token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "active"
            role = "admin" if token.is_admin else "user"
            print(f"{token.name}\t{role}\tcreated {token.created_at:%Y-%m-%d %H:%M}\t{state}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from backend.cli.main import CliError
    from backend.db.session import session_scope
    from backend.services.errors import ServiceError
    from backend.services.tokens import revoke_token

    try:
        with session_scope() as session:
            revoke_token(session, args.name)
    except ServiceError as exc:
        raise CliError(exc.message) from None
    print(f"token {args.name!r} revoked")
    return 0
