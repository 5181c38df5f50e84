"""How the ingest job reports its stages (the CLI draws them as progress bars)."""

from __future__ import annotations

from typing import Protocol


class IngestProgress(Protocol):
    def stage(self, name: str, total: int | None) -> None: ...

    def advance(self, name: str, amount: int = 1) -> None: ...


class NoProgress:
    def stage(self, name: str, total: int | None) -> None:
        pass

    def advance(self, name: str, amount: int = 1) -> None:
        pass
