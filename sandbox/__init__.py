"""Chaos Dojo's sandbox: a deterministic simulated datacenter that runs real FastAPI services."""
from __future__ import annotations

from ._runtime import sleep
from .deps import clock, database, disk, http_client, producer, tracer
from .errors import *  # noqa: F403
from .http import HttpClient, Response, connect_local
from .storage import Database, Row, Transaction
from .world import World
from .broker import Message, Producer, RecordMetadata, consumer
