"""What every request handler needs: the repository and its helpers, and the settings."""

from __future__ import annotations

from dataclasses import dataclass

from carerecord.api.writes import WriteQueue
from carerecord.config import Settings
from carerecord.store.interactions import Interactions
from carerecord.store.repository import Repository
from carerecord.store.search import Searcher
from carerecord.store.transaction import TransactionProcessor


@dataclass
class Context:
    settings: Settings
    repo: Repository
    interactions: Interactions
    searcher: Searcher
    processor: TransactionProcessor
    base: str
    writes: WriteQueue
