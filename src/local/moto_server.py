"""Runs moto's server on 127.0.0.1 for one test binary, and exits when that binary does.

The test harness keeps our stdin open; when the harness process ends, for any reason, the pipe
closes and this process exits, so no emulator outlives its tests.
"""
import os
import sys
import threading

from moto.server import main


def exit_when_parent_goes():
    sys.stdin.read()
    os._exit(0)


threading.Thread(target=exit_when_parent_goes, daemon=True).start()
main(["-H", "127.0.0.1", "-p", sys.argv[1]])
