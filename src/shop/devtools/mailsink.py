"""The local SMTP sink of ``make run``: every message it receives becomes one ``.eml`` file
under ``.shop/mail/`` (aiosmtpd from PyPI), so a developer can read what customers are sent.

    python -m shop.devtools.mailsink .shop/mail --port 8025
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from uvicorn.loops.auto import auto_loop_factory


class MaildirHandler:
    def __init__(self, folder: Path, *, pipelining: bool = False) -> None:
        self.folder, self.pipelining = folder, pipelining
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """EHLO's lines, with ``PIPELINING`` (RFC 2920) if asked for (``--pipelining``), as
        Postfix and hosted relays offer it: aiosmtpd reads pipelined commands in order and
        answers each, and the worker then sends MAIL, RCPT and DATA in one write
        (notifications/smtp.py). Off by default: on loopback it saves the worker no CPU and
        costs the sink more (aiosmtpd writes each reply on its own); docs/events.md, "Issue
        31, fifth round"."""
        session.host_name = hostname  # what aiosmtpd does itself when no handler answers EHLO
        if not self.pipelining:
            return responses
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = self.folder / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        tmp = path.with_suffix(".tmp")
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)  # aiosmtpd's decode_data is off: bytes as received
        tmp.write_bytes(content)
        tmp.rename(path)  # a reader never sees half a message
        return "250 Message accepted for delivery"


def start(
    folder: Path, host: str = "127.0.0.1", port: int = 8025, *, pipelining: bool = False
) -> Controller:
    # SMTPUTF8 (RFC 6531) as a real relay offers it: mail to an address outside ASCII. On the
    # platform's event loop (uvloop where installed, shop.common.loop): the sink is not the
    # platform's, but in make bench it shares the machine's cores with it.
    controller = Controller(
        MaildirHandler(folder, pipelining=pipelining),
        hostname=host,
        port=port,
        enable_SMTPUTF8=True,
        loop=auto_loop_factory()(),
    )
    controller.start()
    return controller


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--pipelining", action="store_true", help="offer PIPELINING (RFC 2920)")
    args = parser.parse_args()
    controller = start(args.folder, args.host, args.port, pipelining=args.pipelining)
    print(f"SMTP sink on {args.host}:{args.port}, writing {args.folder}/*.eml", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
