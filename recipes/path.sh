#!/usr/bin/env bash
# Put the project's virtual environment first on PATH when it exists (make demo / make test
# create it), so recipes find `audiossl` and `torchrun` without an activated venv.
_audiossl_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -x "$_audiossl_root/.venv/bin/audiossl" ]; then
    export PATH="$_audiossl_root/.venv/bin:$PATH"
fi
command -v audiossl >/dev/null || {
    echo "audiossl is not installed: run 'make install' in $_audiossl_root or pip install it" >&2
    exit 1
}
