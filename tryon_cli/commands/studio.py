"""`tryon studio`: a local web page to stream try-on and switch garments live."""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated, Optional

import typer

from engine.modes import RunOptions
from tryon_cli import options
from tryon_cli.console import notice, stdout


@options.run_options(decoder=True)
def studio(
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).", min=0, max=65535)] = 7860,
    host: Annotated[str, typer.Option(help="Address to listen on. Anything but a loopback address needs an "
                                      "access token: --token, or one made up and printed once.")] = "127.0.0.1",
    token: Annotated[Optional[str], typer.Option(help="Access token (16+ characters) every request must carry.")] = None,
    max_seconds: Annotated[float, typer.Option(help="Longest stream a tab may ask for, in seconds.")] = 120.0,
    size: options.Size = None,
    fps: options.Fps = None,
    steps: Annotated[Optional[int], typer.Option(help="Denoising steps per chunk (default: 4).")] = None,
    quiet: options.Quiet = False,
    run: RunOptions = RunOptions(),
) -> None:
    """Serve a web page: upload a person, garments and a motion video, watch the stream, click to switch.

    The page streams the student's frames as they are made; clicking a garment on the shelf
    puts it on at the next chunk (garment-KV refresh, historical-KV withdraw and
    reference-KV disentangle, each a toggle); Stop keeps the frames made, and the session's MP4
    can be downloaded. Tabs take turns on the model. Ctrl-C stops the server (exit 130).

    Example: tryon studio --port 7860   (then open http://127.0.0.1:7860/)
    """
    from engine.api.studio import require_dependencies

    require_dependencies()
    from engine.api.studio.server import StudioOptions, bind, load_studio, serve
    from engine.media import parse_size

    chosen = StudioOptions(run=run, size=parse_size(size) if size else None, fps=fps, steps=steps, host=host,
                           port=port, token=token, max_seconds=max_seconds)

    def ready(url: str) -> None:
        stdout.print(f"tryon studio: open {url}", markup=False, highlight=False, soft_wrap=True)
        if served.token and token is None:
            notice("the access token is in that address; it is printed only this once")
        notice("Ctrl-C stops the server")

    with bind(host, port) as sock:  # a port in use fails before the model is loaded
        served = load_studio(chosen, (lambda message: None) if quiet else notice)
        try:
            # From here a Ctrl-C is the studio's stop below, also one that lands while uvicorn still
            # imports its parts (tryon_cli.main's handler would end such a one as a bare interrupt).
            if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
                signal.signal(signal.SIGINT, signal.default_int_handler)
            serve(served, sock, ready)
        except KeyboardInterrupt:
            notice("tryon studio: stopped")
            # The server is down and its folders are gone: end now, not after seconds of tearing
            # down torch and any stream thread still finishing its chunk.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
