"""`voffice web`, `voffice token ...`, `voffice password`: the cabinet's server and credentials."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from routing.cli.console import fail, main, redis_option, usage, user_errors
from routing.store import configs, credentials


@click.command()
@click.option("--listen", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT", help="Address to serve on.")
@click.option("--database", "database_url", envvar="VOFFICE_DATABASE_URL", default=None, metavar="URL",
              help="PostgreSQL URL of the call history (env VOFFICE_DATABASE_URL).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Where the session signing key is kept (default /var/lib/voffice; made 0600 on first start).")
@click.option("--secure-cookies", is_flag=True, help="Mark the session cookie Secure (serve behind HTTPS).")
@click.option("--media-dir", "media_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="A media server's --data-dir, whose recordings/ voicemail and faxes are served from (repeatable; "
                   "default: voffice up's .run/media*).")
@click.option("--sounds-dir", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="The media servers' --sounds-dir, where uploaded sounds go (default: theirs, sounds/ in the project).")
@redis_option
@user_errors
def web(listen: str, database_url: str | None, state_dir: Path | None, secure_cookies: bool,
        media_dirs: tuple[Path, ...], sounds_dir: Path | None, redis_url: str | None) -> None:
    """Serve the cabinet: the web console (/console) and the REST API (/api, its operations at /api/docs)."""
    import uvicorn

    from routing.web.app import create_app
    from routing.web.settings import DEFAULT_SOUNDS_DIR, DEFAULT_STATE_DIR, SettingsError, WebSettings, parse_listen

    try:
        host, port = parse_listen(listen)
        settings = WebSettings.from_state_dir(state_dir or DEFAULT_STATE_DIR, redis_url=redis_url, database_url=database_url,
                                              listen=listen, secure_cookies=secure_cookies,
                                              media_dirs=media_dirs or _default_media_dirs(),
                                              sounds_dir=sounds_dir or DEFAULT_SOUNDS_DIR)
    except SettingsError as exc:
        usage(str(exc))
    configs.connect(redis_url).ping()  # unreachable: one line now, not a 503 per request
    click.echo(f"voffice web: serving the console on http://{listen}/console and the API on /api (Redis {configs.shown_url(configs.redis_url(redis_url))})", err=True)
    # proxy_headers=False: the client's address (login throttling) is the TCP peer's; a
    # forwarded header could be anyone's (docs/api.md)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", server_header=False,
                proxy_headers=False)


def _default_media_dirs() -> tuple[Path, ...]:
    """The data folders `voffice up` gives its media servers: .run/media, .run/media2, ..."""
    from routing.stack.local import DEFAULT_RUN_DIR

    return (DEFAULT_RUN_DIR / "media", *sorted(DEFAULT_RUN_DIR.glob("media[0-9]*")))


@click.group()
def token() -> None:
    """API tokens of the NOC (Bearer tokens for the REST API)."""


@token.command(name="create")
@click.option("--noc", is_flag=True, required=True, help="A NOC token: every account (the only kind there is).")
@click.option("--name", default="", help="What the token is for (shown by `token list`, recorded in the audit trail).")
@redis_option
@user_errors
def token_create(noc: bool, name: str, redis_url: str | None) -> None:
    """Make a token; it is printed once and only its hash is kept."""
    if not noc:
        usage("--noc is required")
    secret, info = credentials.create_token(configs.connect(redis_url), name)
    click.echo(f"token {info.id} ({info.name or 'unnamed'}), shown only now:", err=True)
    click.echo(secret)


@token.command(name="list")
@redis_option
@user_errors
def token_list(redis_url: str | None) -> None:
    """The tokens (id, role, name, made when), never their secrets."""
    found = credentials.tokens(configs.connect(redis_url))
    for info in found:
        click.echo(f"{info.id}  {info.role}  {info.created_at}  {info.name}")
    click.echo(f"{len(found)} token(s)", err=True)


@token.command(name="revoke")
@click.argument("token_id", metavar="ID")
@redis_option
@user_errors
def token_revoke(token_id: str, redis_url: str | None) -> None:
    """Revoke a token by its id (see `token list`): refused from the next request on."""
    try:
        info = credentials.revoke_token(configs.connect(redis_url), token_id)
    except credentials.CredentialError as exc:
        fail(str(exc))
    click.echo(f"revoked token {info.id} ({info.name or 'unnamed'})")


@click.command()
@click.argument("account")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--delete", is_flag=True, help="Remove the password: the account can no longer log in.")
@redis_option
@user_errors
def password(account: str, from_stdin: bool, delete: bool, redis_url: str | None) -> None:
    """Set the cabinet password of ACCOUNT (argon2-hashed); ends its open sessions."""
    r = configs.connect(redis_url)
    if delete:
        removed = credentials.delete_password(r, account)
        click.echo(f"{account}: password removed" if removed else f"{account}: had no password")
        return
    if not configs.current_version(r, account):
        fail(f"account {account!r} is not loaded")
    if from_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    else:
        secret = click.prompt(f"password for {account}", hide_input=True, confirmation_prompt=True)
    try:
        credentials.set_password(r, account, secret)
    except credentials.CredentialError as exc:
        fail(str(exc))
    click.echo(f"{account}: password set")


# Registered here, at import (console.py imports this module at its end): whichever of the
# two modules is imported first, the commands exist once both are.
main.add_command(web)
main.add_command(token)
main.add_command(password)
