"""The local SMTP sink of ``make run``: every message it receives becomes one ``.eml`` file
under ``.shop/mail/`` (aiosmtpd from PyPI), so a developer can read what customers are sent.

    python -m shop.devtools.mailsink .shop/mail --port 8025

It is aiosmtpd's server with two of its steps made cheaper (``_SinkSMTP``): the sink is not
the platform's, but in make bench it shares the two cores with it, so what it spends per mail
is taken from the orders. ``python -m bench.mailsink_cost --profile`` (py-spy) put a quarter of
its samples in parsing the envelope's two addresses with the standard library's RFC 5322
header parser, and 3-6% in a new timer per command (docs/events.md, "Issue 31, seventh
round").
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from uvicorn.loops.auto import auto_loop_factory

# Characters that only a display name, a comment, a quoted part, a domain literal or a list
# brings into an address (RFC 5322): an address without any is its own addr-spec. The worker
# has its own such set (notifications/service.py): the sink is the server its client is tested
# against, so it shares none of the client's code.
_NOT_BARE = frozenset('<>()",;:@ \t\r\n[]\\')


class _SinkSMTP(SMTP):
    """aiosmtpd's SMTP server, answering exactly as it does, with two steps made cheap:

    * ``_getaddr``: an envelope address in angle brackets that is plainly an addr-spec
      (``<local@domain>``, one ``@``, none of ``_NOT_BARE``: what the notification worker
      sends) is read off the line as it is, which is what aiosmtpd's parse of it returns
      (tests/integration/test_notifier_smtp.py holds the two together); anything else is
      aiosmtpd's parse.
    * ``_reset_timeout``: the idle timeout is a deadline moved forward on each command, with
      one timer that, when it fires early, waits on to the deadline; aiosmtpd cancels a timer
      and makes a new one per command.
    """

    _deadline = 0.0

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        end = arg.find(">")
        if arg[:1] == "<" and end > 0:
            address = arg[1:end]
            local, _, domain = address.partition("@")
            if (
                local
                and domain
                and _NOT_BARE.isdisjoint(local)
                and _NOT_BARE.isdisjoint(domain)
                and address.isprintable()
                and not (self.local_part_limit and len(local) > self.local_part_limit)
            ):
                rest = arg[end + 1 :].lstrip(" \t")  # as aiosmtpd's parse leaves it
                if not rest.startswith("("):  # a comment: aiosmtpd's parse drops it
                    return address, rest
        return super()._getaddr(arg)

    def _reset_timeout(self, duration: float | None = None) -> None:
        self._deadline = self.loop.time() + (duration or self._timeout_duration)
        handle = self._timeout_handle
        if handle is None or handle.when() > self._deadline:  # none yet, or set for later
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_cb)

    def _timeout_cb(self) -> None:
        if self.loop.time() < self._deadline:  # a command came since: wait on to its deadline
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_cb)
        else:
            super()._timeout_cb()  # type: ignore[no-untyped-call]  # aiosmtpd: untyped


class _SinkController(Controller):
    def factory(self) -> SMTP:
        return _SinkSMTP(self.handler, **self.SMTP_kwargs)


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
    folder: Path,
    host: str = "127.0.0.1",
    port: int = 8025,
    *,
    pipelining: bool = False,
    timeout: float = 300.0,
) -> Controller:
    """The sink, listening; ``timeout`` closes a connection idle that long (aiosmtpd's 5 min)."""
    # SMTPUTF8 (RFC 6531) as a real relay offers it: mail to an address outside ASCII. On the
    # platform's event loop (uvloop where installed, shop.common.loop): the sink is not the
    # platform's, but in make bench it shares the machine's cores with it.
    controller = _SinkController(
        MaildirHandler(folder, pipelining=pipelining),
        hostname=host,
        port=port,
        enable_SMTPUTF8=True,
        timeout=timeout,
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
