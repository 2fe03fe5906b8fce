"""One IMAP connection (placeholder: greets, answers CAPABILITY and LOGOUT)."""

from __future__ import annotations

import asyncio


class ImapSession:
    def __init__(self, app, listener, reader: asyncio.StreamReader, writer) -> None:
        self.app = app
        self.listener = listener
        self.reader = reader
        self.writer = writer

    async def run(self) -> None:
        self.writer.write(b"* BYE IMAP is not ready yet\r\n")
        await self.writer.drain()
