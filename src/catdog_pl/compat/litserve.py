"""LitServe 0.2.19: its queues between processes, and its wait for the workers. ``serving.server.CatDogServer``
overrides ``_init_manager`` and ``verify_worker_status`` and calls these."""

from __future__ import annotations

import multiprocessing
from typing import Any

#: The parts of ``litserve.LitServer`` that ``CatDogServer`` overrides or sets.
SERVER_HOOKS = ("_init_manager", "verify_worker_status")
SERVER_ATTRIBUTES = ("litapi_request_queues", "_transport", "_shutdown_event")


def use_pipes(server: Any, num_api_servers: int) -> None:
    """Swap a server's ``Manager().Queue()``s for requests and answers for ``multiprocessing.Queue`` pipes, after
    LitServe's ``_init_manager`` made them (the spawned workers and forked HTTP processes receive these instead)."""
    from litserve.transport.process_transport import MPQueueTransport

    context = multiprocessing.get_context("spawn")
    for path in server.litapi_request_queues:
        server.litapi_request_queues[path] = context.Queue()
    server._transport = MPQueueTransport(None, [context.Queue() for _ in range(num_api_servers)])


def shut_down(server: Any) -> None:
    """Stop a running server as LitServe's own wait does when no worker becomes ready."""
    server._shutdown_event.set()
