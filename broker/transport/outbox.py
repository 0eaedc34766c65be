"""The bounded queue of messages for one peer during one event-loop turn.

Everything queued in a turn leaves as one envelope at the end of the turn, so the outbox is
bounded like an envelope: by messages, frames and payload bytes. When an offer would pass a
bound it is refused (the caller drops the newest message and counts it): the messages already
queued stay an unbroken prefix of what the caller sent, which is what a Raft follower can use.
"""

from __future__ import annotations

__all__ = ["Outbox", "Buffer"]

Buffer = bytes | bytearray | memoryview


class Outbox:
    __slots__ = (
        "messages", "frames", "bytes", "has_large",
        "_messages_max", "_frames_max", "_bytes_max",
    )

    def __init__(self, *, messages_max: int, frames_max: int, bytes_max: int) -> None:
        assert messages_max > 0 and frames_max > 0 and bytes_max > 0
        self.messages: list[tuple[Buffer, ...]] = []  # each tuple holds >= 1 frame
        self.frames = 0  # == sum(len(m) for m in messages) <= frames_max
        self.bytes = 0  # payload bytes of all frames <= bytes_max
        self.has_large = False  # some frame is at least the zero-copy threshold
        self._messages_max = messages_max
        self._frames_max = frames_max
        self._bytes_max = bytes_max

    def __len__(self) -> int:
        return len(self.messages)

    def fits(self, frames: int, size: int) -> bool:
        """Whether one more message of `frames` frames and `size` bytes can be queued."""
        return (
            len(self.messages) < self._messages_max
            and self.frames + frames <= self._frames_max
            and self.bytes + size <= self._bytes_max
        )

    def offer(self, message: tuple[Buffer, ...], size: int, large: bool) -> bool:
        """Queue `message` (`size` payload bytes) unless a bound would be passed."""
        if not self.fits(len(message), size):
            return False
        self.messages.append(message)
        self.frames += len(message)
        self.bytes += size
        self.has_large = self.has_large or large
        return True

    def take(self) -> tuple[list[tuple[Buffer, ...]], int, bool]:
        """Empty the outbox; returns (messages, payload bytes, has a zero-copy-sized frame)."""
        taken = (self.messages, self.bytes, self.has_large)
        self.messages = []
        self.frames = 0
        self.bytes = 0
        self.has_large = False
        return taken
