"""Python grpc_helper (2.3.1) server with events and the example's config items, for the
workspace hand-over test (tests/handover.rs).

Usage: python tests/python/py_workspace.py --port PORT --workspace DIR write
       python tests/python/py_workspace.py --port PORT --workspace DIR check --queues 1,2 --loggers a,b

The server hosts the user items `sample-greeting` (text, default Hello) and `sample-parts`
(positive int, default 3), as the Rust example server does, with events on. It runs in this
process and the script is its own client.

write: sets sample-greeting=Bonjour and sample-parts=5, sets the logger py_interop_logger to
WARNING and disables quiet_logger, opens an event queue and interrupts it, then shuts down (so the
workspace holds config.json, loggers.json and queues.json as the original writes them). Prints:

    QUEUE id=<id>
    OK

check: starts on the workspace (it must start), then prints what it sees:

    INSPECT ids=<comma-separated ids>                 (the queues restored from queues.json)
    ITEM name=<name> value=<value>                    (one per user item)
    LOGGER name=<name> enabled=<bool> level=<n>       (one per --loggers name)
    RESUMED id=<id>                                   (one per --queues id: listen resumed it)
    OK

Any failure prints a traceback on stderr and exits 1.
"""

import argparse
import os
import sys
import threading
import traceback
from pathlib import Path

import common

TIMEOUT = 10.0


def start_server(port: int, workspace: Path):
    from grpc_helper import Folders, RpcServer
    from grpc_helper.config.cfg_item import Config
    from grpc_helper_api import ConfigValidator

    items = [
        Config(name="sample-greeting", description="Greeting used by method4", default_value="Hello"),
        Config(
            name="sample-parts",
            description="Number of parts streamed by s_method2",
            default_value="3",
            validator=ConfigValidator.CONFIG_VALID_POS_INT,
        ),
    ]
    return RpcServer(port, [], folders=Folders(workspace=workspace), user_items=items, with_events=True, with_debug_signal=False)


def client_of(port: int):
    from grpc_helper import RpcClient
    from grpc_helper_api import ConfigApiVersion, EventApiVersion, LoggerApiVersion
    from grpc_helper_api.config_pb2_grpc import ConfigServiceStub
    from grpc_helper_api.events_pb2_grpc import EventServiceStub
    from grpc_helper_api.logger_pb2_grpc import LoggerServiceStub

    stubs = {
        "config": (ConfigServiceStub, ConfigApiVersion.CONFIG_API_CURRENT),
        "log": (LoggerServiceStub, LoggerApiVersion.LOGGER_API_CURRENT),
        "events": (EventServiceStub, EventApiVersion.EVENT_API_CURRENT),
    }
    return RpcClient(common.LOOPBACK_IP, port, stubs, timeout=TIMEOUT, name=common.client_metadata("py-workspace"))


def listen_then_interrupt(client, client_id: int) -> int:
    """Opens (client_id 0) or resumes a queue, reads its first message, interrupts it."""
    from grpc_helper_api import EventFilter, EventInterrupt

    first = []
    ended = threading.Event()

    def listen():
        for status in client.events.listen(EventFilter(client_id=client_id), timeout=TIMEOUT):
            if not first:
                first.append(status)
        ended.set()

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    while not first:
        assert thread.is_alive(), "listen ended before its first message"
        thread.join(0.05)
    status = first[0]
    assert status.client_id > 0 and not status.HasField("event"), status
    assert client_id in (0, status.client_id), status
    client.events.interrupt(EventInterrupt(client_id=status.client_id), timeout=TIMEOUT)
    assert ended.wait(TIMEOUT), "the stream did not end after the interrupt"
    return status.client_id


def write(client):
    from grpc_helper_api import ConfigItemUpdate, ConfigUpdate, LoggerConfig, LoggerLevel, LoggerUpdate

    items = [ConfigItemUpdate(name="sample-greeting", value="Bonjour"), ConfigItemUpdate(name="sample-parts", value="5")]
    client.config.set(ConfigUpdate(items=items), timeout=TIMEOUT)
    loggers = [
        LoggerConfig(name="py_interop_logger", enabled=True, level=LoggerLevel.LVL_WARNING),
        LoggerConfig(name="quiet_logger", enabled=False, level=LoggerLevel.LVL_UNKNOWN),
    ]
    client.log.set(LoggerUpdate(items=loggers), timeout=TIMEOUT)
    print(f"QUEUE id={listen_then_interrupt(client, 0)}", flush=True)


def check(client, queues, loggers):
    from grpc_helper_api import Empty, Filter

    ids = client.events.inspect(Empty(), timeout=TIMEOUT).client_ids
    print(f"INSPECT ids={','.join(str(i) for i in sorted(ids))}", flush=True)
    for item in client.config.get(Filter(), timeout=TIMEOUT).items:
        print(f"ITEM name={item.name} value={item.value}", flush=True)
    for item in client.log.get(Filter(names=loggers), timeout=TIMEOUT).items:
        print(f"LOGGER name={item.name} enabled={item.enabled} level={item.level}", flush=True)
    for queue in queues:
        print(f"RESUMED id={listen_then_interrupt(client, queue)}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="grpc_helper 2.3.1 workspace hand-over server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("mode", choices=["write", "check"])
    parser.add_argument("--queues", default="")
    parser.add_argument("--loggers", default="")
    args = parser.parse_args()

    # Safety net: the process ends in time whatever happens.
    watchdog = threading.Timer(60.0, lambda: os._exit(2))
    watchdog.daemon = True
    watchdog.start()

    common.loopback_only()
    server = start_server(args.port, args.workspace.resolve())
    try:
        client = client_of(args.port)
        if args.mode == "write":
            write(client)
        else:
            queues = [int(q) for q in args.queues.split(",") if q]
            check(client, queues, [n for n in args.loggers.split(",") if n])
    finally:
        server.shutdown()
    print("OK", flush=True)
    return 0


if __name__ == "__main__":
    try:
        rc = main()
    except BaseException:
        sys.stdout.flush()
        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
