"""The SMTP sink's CPU per mail (``shop.devtools.mailsink``, the local stand-in for SES that
make bench runs beside the platform): mails sent over one kept connection, as the
notification worker sends them, and the sink process's CPU read from /proc.

    .venv/bin/python -m bench.mailsink_cost [--mails 2000] [--rounds 3]

Before and after a change, put each tree's ``src`` first on PYTHONPATH (bench/ab.sh does the
same for make bench), alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from shop.devtools.processes import free_port


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _send(port: int, mails: int) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "shop@example.com", "a@example.com", "Paid"
    message.set_content("2 x Mug at 3.00 = 6.00\n" * 5)
    raw = message.as_bytes()
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
    await client.connect()
    for _ in range(mails):
        await client.sendmail("shop@example.com", ["a@example.com"], raw)
    await client.quit()


def ms_per_mail(mails: int) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        sink = subprocess.Popen(
            [sys.executable, "-m", "shop.devtools.mailsink", folder, "--port", str(port)],
            stdout=subprocess.PIPE,
        )
        try:
            assert sink.stdout is not None
            sink.stdout.readline()  # "SMTP sink on ...": it listens
            asyncio.run(_send(port, 50))  # warm
            before = _cpu_seconds(sink.pid)
            asyncio.run(_send(port, mails))
            return (_cpu_seconds(sink.pid) - before) / mails * 1000
        finally:
            sink.terminate()
            sink.wait(15)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for _ in range(args.rounds):
        print(f"mail sink: {ms_per_mail(args.mails):.3f} ms of CPU per mail", flush=True)
