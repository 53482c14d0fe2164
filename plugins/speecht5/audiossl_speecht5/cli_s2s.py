"""``audiossl s2s train | convert | evaluate``: speech-to-speech voice conversion through the speech decoder.

Heavy imports happen inside the commands: audiossl mounts this app at every start-up.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Voice conversion speech -> speech: any upstream's frames -> target speaker's log-mel (decoder) -> vocoder.",
    no_args_is_help=True,
)
