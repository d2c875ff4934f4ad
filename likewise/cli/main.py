"""``likewise``: serve, demo, import users, create advertisers, answer one request, benchmarks."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from likewise.cli.demo import DEFAULT_EVENTS
from likewise.errors import LikewiseError
from likewise.settings import Settings

app = typer.Typer(
    help="Likewise: a self-hostable Custom Audiences engine with TikTok-compatible APIs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
users_app = typer.Typer(help="Platform users: import, consent, erasure.", no_args_is_help=True)
advertisers_app = typer.Typer(help="Advertisers and their access tokens.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(advertisers_app, name="advertisers")

err = Console(stderr=True)


def main() -> None:
    app()


@contextmanager
def _runtime(*, start: bool = False) -> Iterator[Any]:
    from likewise.runtime import Runtime

    rt = Runtime(Settings())
    if start:
        rt.start()
    try:
        yield rt
    finally:
        rt.close()


@contextmanager
def _errors() -> Iterator[None]:
    """Domain errors become one readable line and exit code 1, never a traceback."""
    try:
        yield
    except LikewiseError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the HTTP server (data directory from LIKEWISE_DATA_DIR)."""
    _serve(Settings(), host=host, port=port)


def _serve(settings: Settings, *, host: str | None, port: int | None) -> None:
    import uvicorn

    from likewise.api import create_app

    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level="info",
        access_log=False,  # query strings could carry identifiers; metrics replace access logs
    )


@app.command()
def demo(
    users: Annotated[int, typer.Option(help="Platform users to generate.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic platform.")] = 7,
    events: Annotated[
        int,
        typer.Option(
            min=0, help="Simulated events to replay through the real endpoints (0: none)."
        ),
    ] = DEFAULT_EVENTS,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Start the server afterwards.")
    ] = True,
) -> None:
    """Generate a demo platform and advertiser, replay simulated activity, print its token,
    and serve."""
    import secrets

    from likewise.cli.demo import build_demo

    settings = Settings()
    generated = None
    if not settings.admin_token:
        # The replay needs the admin API (app, lead form, engagement); this token lives as long
        # as this demo process, and is printed so the admin API can be tried while it serves.
        generated = secrets.token_urlsafe(24)
        settings = settings.model_copy(update={"admin_token": generated})
    with _errors():
        info = build_demo(
            settings, users=users, seed=seed, events=events, progress=_progress_callback()
        )
    info["admin_token"] = generated
    _print_json(info)
    sys.stderr.write(info["example"] + "\n")  # unwrapped, so the commands copy and paste
    if "replay" in info:
        sent = info["replay"]["sent"]
        parts = ", ".join(f"{k} {v['accepted']}/{v['events']}" for k, v in sent.items())
        sys.stderr.write(f"Replayed simulated events (accepted/sent): {parts}\n")
        for kind, result in sent.items():
            for message, bodies in result["errors"].items():
                sys.stderr.write(f"  {kind}: {bodies} request(s) refused: {message}\n")
    if generated:
        sys.stderr.write(f"Admin API token for this session (X-Admin-Token): {generated}\n")
    if serve_after:
        _serve(settings, host=host, port=port)


@users_app.command("import")
def users_import(
    path: Annotated[Path, typer.Argument(help="CSV or Parquet file of platform users.")],
) -> None:
    """Import platform users; prints a JSON summary."""
    from likewise.ingest.users import import_users

    with _errors(), _runtime() as rt:
        summary = import_users(rt.graph, path, progress=_progress_callback())
    _print_json(summary)


@users_app.command("consent")
def users_consent(
    user_ids: Annotated[list[str], typer.Argument(help="Platform user ids.")],
    personalized_ads: Annotated[
        bool, typer.Option("--opt-in/--opt-out", help="Allow or refuse personalised ads.")
    ],
) -> None:
    """Change users' consent to personalised ads."""
    with _errors(), _runtime() as rt:
        changed, missing = rt.graph.set_consent(user_ids, personalized_ads)
    _print_json({"updated": changed, "not_found": missing})


@users_app.command("erase")
def users_erase(user_ids: Annotated[list[str], typer.Argument(help="Platform user ids.")]) -> None:
    """Erase users: removed from every audience, identifiers deleted."""
    with _errors(), _runtime() as rt:
        erased, missing = rt.erase_users(user_ids)
    _print_json({"erased": erased, "not_found": missing})


@advertisers_app.command("create")
def advertisers_create(
    name: Annotated[str, typer.Option(help="Advertiser name.")],
    business_center: Annotated[
        str | None, typer.Option("--business-center", help="Business center id.")
    ] = None,
    country: Annotated[str, typer.Option(help="Default region of national phones.")] = "US",
) -> None:
    """Create an advertiser and an access token; prints both as JSON."""
    from likewise.api.routes.admin import AdvertiserCreate, create_advertiser
    from likewise.api.wire.base import parse

    with _errors(), _runtime() as rt:
        req = parse(
            AdvertiserCreate,
            {"name": name, "business_center_id": business_center, "country": country},
        )
        _print_json(create_advertiser(rt, req))


@advertisers_app.command("token")
def advertisers_token(
    advertiser_ids: Annotated[list[int], typer.Argument(help="Advertisers the token may use.")],
) -> None:
    """Create another access token for existing advertisers."""
    with _errors(), _runtime() as rt:
        token = rt.tenants.create_token(advertiser_ids=advertiser_ids, now=rt.clock())
    _print_json({"access_token": token})


@app.command()
def get(
    path: Annotated[str, typer.Argument(help="Path and query, e.g. /open_api/v1.3/user/info/")],
    token: Annotated[str | None, typer.Option(help="Access-Token header.")] = None,
) -> None:
    """Answer one GET request without starting a server (handy in bug reports)."""
    import asyncio

    import httpx

    from likewise.api import create_app

    async def run() -> httpx.Response:
        with _runtime(start=True) as rt:
            transport = httpx.ASGITransport(app=create_app(runtime=rt))
            async with httpx.AsyncClient(transport=transport, base_url="http://likewise") as c:
                headers = {"Access-Token": token} if token else {}
                return await c.get(path, headers=headers)

    response = asyncio.run(run())
    sys.stdout.write(json.dumps(response.json(), indent=2) + "\n")


def _progress_callback() -> Callable[[str, float], None] | None:
    """A rich progress bar on stderr when it is a terminal; nothing otherwise."""
    if not err.is_terminal:
        return None
    progress = Progress(
        TextColumn("{task.description:<24}"), BarColumn(), TimeElapsedColumn(), console=err
    )
    task = progress.add_task("starting", total=1.0)
    progress.start()

    def update(step: str, fraction: float) -> None:
        progress.update(task, description=step, completed=fraction)
        if fraction >= 1.0:
            progress.stop()

    return update
