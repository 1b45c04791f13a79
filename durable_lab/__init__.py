"""durable_lab: Cloudflare Durable Objects, in process, made visible.

    from durable_lab import Lab, DurableObject

The public names mirror Cloudflare's Python Workers API (``DurableObject``, ``ctx.storage``,
``ctx.blockConcurrencyWhile``, ``env.NS.idFromName``, ``getByName``...), so a class written here
runs on Cloudflare with only its import line changed. See docs/architecture.md for how the
runtime is built and docs/semantics.md for what it does (and deliberately does not do).
"""

from __future__ import annotations

from . import events as events
from ._turns import now as now
from ._turns import sleep as sleep
from .bus import EventBus as EventBus
from .bus import Recorder as Recorder
from .bus import Subscription as Subscription
from .clock import AutoClock as AutoClock
from .clock import ManualClock as ManualClock
from .clock import RealClock as RealClock
from .errors import DurableLabError as DurableLabError
from .errors import DurableObjectError as DurableObjectError
from .errors import DurableObjectResetError as DurableObjectResetError
from .errors import LabClosedError as LabClosedError
from .errors import LabFolderError as LabFolderError
from .errors import LabForkedError as LabForkedError
from .errors import OverloadedError as OverloadedError
from .errors import StorageCorruptError as StorageCorruptError
from .errors import StorageError as StorageError
from .explore import explore as explore
from .http import Headers as Headers
from .http import Request as Request
from .http import Response as Response
from .ids import DurableObjectId as DurableObjectId
from .lab import Env as Env
from .lab import Lab as Lab
from .namespace import DurableObjectNamespace as DurableObjectNamespace
from .namespace import DurableObjectStub as DurableObjectStub
from .objects import DurableObject as DurableObject
from .objects import DurableObjectState as DurableObjectState
from .snapshot import LabSnapshot as LabSnapshot
from .snapshot import ObjectSnapshot as ObjectSnapshot
from .storage import DurableObjectStorage as DurableObjectStorage
from .websockets import ClientWebSocket as ClientWebSocket
from .websockets import WebSocket as WebSocket
from .websockets import WebSocketDisconnected as WebSocketDisconnected
from .websockets import WebSocketPair as WebSocketPair
from .websockets import WebSocketRequestResponsePair as WebSocketRequestResponsePair

__version__ = "0.1.0"

__all__ = [
    "AutoClock",
    "ClientWebSocket",
    "DurableLabError",
    "DurableObject",
    "DurableObjectError",
    "DurableObjectId",
    "DurableObjectNamespace",
    "DurableObjectResetError",
    "DurableObjectState",
    "DurableObjectStorage",
    "DurableObjectStub",
    "Env",
    "EventBus",
    "Headers",
    "Lab",
    "LabClosedError",
    "LabFolderError",
    "LabForkedError",
    "LabSnapshot",
    "ManualClock",
    "ObjectSnapshot",
    "OverloadedError",
    "RealClock",
    "Recorder",
    "Request",
    "Response",
    "StorageCorruptError",
    "StorageError",
    "Subscription",
    "WebSocket",
    "WebSocketDisconnected",
    "WebSocketPair",
    "WebSocketRequestResponsePair",
    "events",
    "explore",
    "now",
    "sleep",
]
