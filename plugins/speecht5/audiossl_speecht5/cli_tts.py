"""``audiossl tts train | synthesize | evaluate``: text-to-speech with an attention decoder, vocoded by the vc plugin.

Heavy imports happen inside the commands: audiossl mounts this app at every start-up.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Text-to-speech: text -> log-mel (attention decoder + post-net) -> waveform (vc plugin's vocoders).",
    no_args_is_help=True,
)
