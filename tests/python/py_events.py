"""Python grpc_helper (2.3.1) client of a Rust server's `events` service, for the interop tests.

Usage: python tests/python/py_events.py --host 127.0.0.1 --port PORT [--timeout SECONDS]

Listens (filter: py-event) in a thread, sends py-event (with a property) and another event that
the filter drops, interrupts its queue, then inspects. Output, one item per line:

    LISTENING id=<client id>
    RECEIVED name=py-event props=origin=python
    ENDED                          (the stream ended after the interrupt)
    INSPECT ids=<comma-separated ids>
    OK

Any failure prints a traceback on stderr and exits 1.
"""

import queue
import sys
import threading

import common


def main() -> int:
    args = common.client_args("grpc_helper 2.3.1 events interop client", timeout=10.0)
    timeout = args.timeout

    common.loopback_only()
    from grpc_helper import RpcClient
    from grpc_helper_api import Empty, Event, EventApiVersion, EventFilter, EventInterrupt, EventProperty
    from grpc_helper_api.events_pb2_grpc import EventServiceStub

    client = RpcClient(
        args.host,
        args.port,
        {"events": (EventServiceStub, EventApiVersion.EVENT_API_CURRENT)},
        timeout=timeout,
        name=common.client_metadata("py-events"),
    )

    messages = queue.Queue()

    def listen():
        try:
            for status in client.events.listen(EventFilter(names=["py-event"]), timeout=timeout):
                messages.put(status)
            messages.put("ENDED")
        except Exception as e:  # noqa: BLE001 - reported to the main thread
            messages.put(e)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()

    first = messages.get(timeout=timeout)
    assert not isinstance(first, Exception), first
    client_id = first.client_id
    assert client_id > 0 and not first.HasField("event"), first
    print(f"LISTENING id={client_id}", flush=True)

    client.events.send(Event(name="other-event"), timeout=timeout)
    client.events.send(Event(name="py-event", properties=[EventProperty(name="origin", value="python")]), timeout=timeout)
    while True:
        status = messages.get(timeout=timeout)
        assert not isinstance(status, Exception), status
        if status.event.name:  # skip keep-alives
            break
    props = ",".join(f"{p.name}={p.value}" for p in status.event.properties)
    print(f"RECEIVED name={status.event.name} props={props}", flush=True)

    client.events.interrupt(EventInterrupt(client_id=client_id), timeout=timeout)
    end = messages.get(timeout=timeout)
    assert end == "ENDED", end
    print("ENDED", flush=True)

    ids = client.events.inspect(Empty(), timeout=timeout).client_ids
    print(f"INSPECT ids={','.join(str(i) for i in ids)}", flush=True)
    print("OK", flush=True)
    return 0


if __name__ == "__main__":
    common.run(main)
