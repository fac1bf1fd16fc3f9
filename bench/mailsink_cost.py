"""The SMTP sink's CPU per mail (``shop.devtools.mailsink``, the local stand-in for SES that
make bench runs beside the platform): mails sent over one kept connection, as the
notification worker sends them, and the sink process's CPU read from /proc.

    .venv/bin/python -m bench.mailsink_cost [--mails 2000] [--rounds 3] [--folder /dev/shm]

``--folder`` is where the sink's folder is made (the system's temporary directory by
default): make bench puts it on tmpfs (bench/platform.py, ``_sink_folder``). ``--profile OUT``
records the sink with py-spy while it receives (raw folded stacks, 200 samples a second) and
prints its heaviest frames, own and inclusive (``bench.profile.summarise``). ``--send-to
PORT`` only sends the mails, to a sink started elsewhere (bench/event_instructions.sh counts
one under valgrind).

Before and after a change, put each tree's ``src`` first on PYTHONPATH (bench/ab.sh does the
same for make bench), alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from bench.profile import py_spy_binary, summarise
from shop.devtools.processes import free_port


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """The process's user and system CPU seconds so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


async def send(port: int, mails: int) -> None:
    """``mails`` mails to the sink on ``port``, over one connection."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "shop@example.com", "a@example.com", "Paid"
    message.set_content("2 x Mug at 3.00 = 6.00\n" * 5)
    raw = message.as_bytes()
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
    await client.connect()
    for _ in range(mails):
        await client.sendmail("shop@example.com", ["a@example.com"], raw)
    await client.quit()


def ms_per_mail(
    mails: int, parent: str | None = None, profile: str | None = None
) -> tuple[float, float]:
    """The sink's user and system CPU per mail, in ms, writing in a new folder in ``parent``;
    with ``profile``, py-spy's folded stacks of the sink while it receives go there."""
    port = free_port()
    with tempfile.TemporaryDirectory(dir=parent) as folder:
        sink = subprocess.Popen(
            [sys.executable, "-m", "shop.devtools.mailsink", folder, "--port", str(port)],
            stdout=subprocess.PIPE,
        )
        try:
            assert sink.stdout is not None
            sink.stdout.readline()  # "SMTP sink on ...": it listens
            asyncio.run(send(port, 50))  # warm
            spy = None
            if profile:
                binary = py_spy_binary()
                if binary is None:
                    raise SystemExit("py-spy is not installed (the dev extra has it)")
                spy = subprocess.Popen(
                    [
                        binary,
                        "record",
                        "-p",
                        str(sink.pid),
                        "-r",
                        "200",
                        "-f",
                        "raw",
                        "-o",
                        profile,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1)  # attached
            user, system = _cpu_seconds(sink.pid)
            asyncio.run(send(port, mails))
            user_after, system_after = _cpu_seconds(sink.pid)
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
                spy.wait(30)
                summary = summarise(Path(str(profile)))
                print(f"profile: {summary['samples']} samples")
                for kind in ("own", "inclusive"):
                    print(f"the heaviest frames, {kind}:")
                    for frame, share in summary[kind][:15]:
                        print(f"  {share:5.1f}%  {frame}")
            return (user_after - user) / mails * 1000, (system_after - system) / mails * 1000
        finally:
            sink.terminate()
            sink.wait(15)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", help="where the sink's folder is made (default: the temp dir)")
    parser.add_argument("--profile", help="py-spy's raw folded stacks of the sink to this file")
    parser.add_argument("--send-to", type=int, metavar="PORT", help="only send, to this port")
    args = parser.parse_args()
    if args.send_to:
        asyncio.run(send(args.send_to, args.mails))
        raise SystemExit(0)
    for _ in range(args.rounds):
        user, system = ms_per_mail(args.mails, args.folder, args.profile)
        print(
            f"mail sink: {user + system:.3f} ms of CPU per mail"
            f" (user {user:.3f}, system {system:.3f})",
            flush=True,
        )
