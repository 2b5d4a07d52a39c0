"""grpc_helper's own EventsListener (2.3.1) against a Rust server, for the interop tests.

Usage: python tests/python/py_events_listener.py --host 127.0.0.1 --port PORT [--timeout SECONDS]

Starts an EventsListener (filter: py-event), sends py-event and an event the filter drops,
then interrupts the listener; its thread must end. Output, one item per line:

    READY id=<client id>           (the random id the server gave)
    RECEIVED name=py-event props=n=1
    STOPPED                        (the listening thread ended after interrupt())
    OK

Any failure prints a traceback on stderr and exits 1.
"""

import queue

import common


def main() -> int:
    args = common.client_args("grpc_helper 2.3.1 EventsListener interop client", timeout=10.0)
    timeout = args.timeout

    common.loopback_only()
    from grpc_helper import RpcClient
    from grpc_helper.events import EventsListener
    from grpc_helper_api import Event, EventApiVersion, EventProperty
    from grpc_helper_api.events_pb2_grpc import EventServiceStub

    client = RpcClient(
        args.host,
        args.port,
        {"events": (EventServiceStub, EventApiVersion.EVENT_API_CURRENT)},
        timeout=timeout,
        name=common.client_metadata("py-events-listener"),
    )
    received = queue.Queue()

    class Listener(EventsListener):
        def on_event(self, event):
            received.put(event)

    listener = Listener(client, ["py-event"])
    assert listener.ready.wait(timeout), "the listener never got its id"
    assert listener.client_id > 0, listener.client_id
    print(f"READY id={listener.client_id}", flush=True)

    client.events.send(Event(name="other-event"), timeout=timeout)
    client.events.send(Event(name="py-event", properties=[EventProperty(name="n", value="1")]), timeout=timeout)
    event = received.get(timeout=timeout)
    props = ",".join(f"{p.name}={p.value}" for p in event.properties)
    print(f"RECEIVED name={event.name} props={props}", flush=True)

    listener.interrupt()
    assert not listener.listening_t.is_alive(), "the listening thread still runs after interrupt()"
    print("STOPPED", flush=True)
    print("OK", flush=True)
    return 0


if __name__ == "__main__":
    common.run(main)
