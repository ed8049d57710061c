"""The one lifecycle of ``serve`` and the workers (``obsloop.runtime.run_until_signal``)."""

from __future__ import annotations

import subprocess
import sys

#: A service that receives a real SIGTERM halfway through its start, as a pod stopped while
#: it is still coming up does. In a process of its own: the old code let the signal kill it.
SCRIPT = """
import asyncio, os, signal
from obsloop.runtime import run_until_signal

class SignalledWhileStarting:
    def __init__(self):
        self.events = []
    async def start(self):
        self.events.append("starting")
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.05)
        self.events.append("started")
    async def stop(self):
        self.events.append("stopped")

service = SignalledWhileStarting()
asyncio.run(run_until_signal(service, duration=30))
print(",".join(service.events))
"""


def test_a_sigterm_while_starting_stops_the_service_cleanly() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "starting,started,stopped"), done.stderr[-2000:]
