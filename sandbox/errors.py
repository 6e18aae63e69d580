"""Everything the sandbox raises.

Two families, kept apart on purpose:

* ``SandboxError``: you used the sandbox wrongly (a bad seed, a service name that
  does not exist, an await the sandbox cannot drive). The message shows the bad
  value and says what to do instead. Fix the code or the set-up and run again.
* ``SimulatedFailure``: something went wrong *inside the simulated datacenter*
  (a request timed out, a row lock was not granted in time, a compare-and-set lost
  the race). Real services meet these in production; service code should catch
  them and decide what to do, exactly as it would with a real network or database.

The hierarchy::

    SandboxError
    ├── ConfigError               bad set-up of a world
    │   ├── BadSeedError
    │   ├── DuplicateNameError
    │   ├── UnknownNameError
    │   │   └── UnknownServiceError
    │   ├── InvalidReplicasError
    │   ├── InvalidParameterError
    │   └── WindowedRunError      reading the whole record of a run that kept only its last part
    ├── WorldFinishedError        running a world past its end, or backwards
    ├── ScenarioError             an explored scenario raised (with its seed and schedule)
    ├── ForeignAwaitError         awaiting something the sandbox does not drive
    ├── LivelockError             service code looping without letting virtual time pass
    └── NotInSandboxError         a sandbox-only call made outside a running world

    SimulatedFailure
    ├── RequestTimeout            (also an httpx.TimeoutException)
    ├── IncompleteResponse        the server cut the response short (also an httpx.RemoteProtocolError)
    ├── NodeCrashed               the calling node crashed while it waited
    ├── LockTimeout               a row lock was not granted within lock_timeout
    ├── VersionConflict           a conditional write found another version
    ├── DuplicateKey              insert of a key that already exists
    └── TransactionAborted        the database ended the transaction (crash, timeout)
"""

from __future__ import annotations

import httpx

__all__ = [
    "SandboxError",
    "ConfigError",
    "BadSeedError",
    "DuplicateNameError",
    "UnknownNameError",
    "UnknownServiceError",
    "InvalidReplicasError",
    "InvalidParameterError",
    "WindowedRunError",
    "WorldFinishedError",
    "ScenarioError",
    "ForeignAwaitError",
    "LivelockError",
    "NotInSandboxError",
    "SimulatedFailure",
    "RequestTimeout",
    "IncompleteResponse",
    "NodeCrashed",
    "LockTimeout",
    "VersionConflict",
    "DuplicateKey",
    "TransactionAborted",
]


class SandboxError(Exception):
    """The root of every misuse of the sandbox; the message says what to do instead."""


class ConfigError(SandboxError):
    """A world was set up with a value it cannot use."""


class BadSeedError(ConfigError):
    """The seed is not a non-negative integer."""


class DuplicateNameError(ConfigError):
    """A service, database, client or topic name is already taken in this world."""


class UnknownNameError(ConfigError):
    """A name (node, database, topic...) that this world does not have."""


class UnknownServiceError(UnknownNameError):
    """A service name that this world does not have."""


class InvalidReplicasError(ConfigError):
    """The replica count of a service is not a positive integer."""


class InvalidParameterError(ConfigError):
    """A parameter is out of its range (a negative latency, a probability above 1...)."""


class WindowedRunError(ConfigError):
    """A reader needs the whole record of a run that kept only its last part (``World(keep_events=...)``
    or ``World(keep_spans=...)``): what it would read is gone, so it refuses rather than answer from part."""


class WorldFinishedError(SandboxError):
    """The world cannot run to the time asked for (it is already there or past it)."""


class ScenarioError(SandboxError):
    """A scenario being explored raised (its build, or its code outside the services); the message
    names the seed and the schedule, so that the run can be replayed and debugged."""


class ForeignAwaitError(SandboxError):
    """Service code awaited something the sandbox does not drive in virtual time."""


class LivelockError(SandboxError):
    """Service code kept running at one instant of virtual time; the sandbox stopped it."""


class NotInSandboxError(SandboxError):
    """A call that only makes sense inside a running world was made outside one."""


class SimulatedFailure(Exception):
    """The root of failures that happen inside the simulated datacenter."""


class RequestTimeout(SimulatedFailure, httpx.TimeoutException):
    """No response arrived within the caller's timeout.

    The request may or may not have taken effect on the other side: the caller
    cannot tell, which is the whole difficulty. It is also an
    ``httpx.TimeoutException``, so code written against httpx catches it as is.
    """

    def __init__(self, message: str) -> None:
        httpx.TimeoutException.__init__(self, message)


class IncompleteResponse(SimulatedFailure, httpx.RemoteProtocolError):
    """The server started a response and never finished it: the endpoint raised, or returned, while streaming its
    body (a ``StreamingResponse`` whose generator failed midway). Under uvicorn the client sees the connection
    closed mid-body, and httpx raises ``RemoteProtocolError``; so does the sandbox, with this subclass. The
    request's effects happened, or some of them did.
    """

    def __init__(self, message: str) -> None:
        httpx.RemoteProtocolError.__init__(self, message)


class NodeCrashed(SimulatedFailure):
    """The node running this code crashed; the code is being torn down."""


class LockTimeout(SimulatedFailure):
    """A row lock was not granted within the lock timeout (PostgreSQL's lock_timeout)."""


class VersionConflict(SimulatedFailure):
    """A conditional write expected one version of a row and found another."""


class DuplicateKey(SimulatedFailure):
    """An insert found the key already present (a unique-constraint violation)."""


class TransactionAborted(SimulatedFailure):
    """The database ended this transaction; none of its writes took effect."""
