"""Python grpc_helper (2.3.1) client of a Rust server's `config` service, for the interop tests.

Usage: python tests/python/py_config.py --host 127.0.0.1 --port PORT [--timeout SECONDS]

The server hosts the example's user items `sample-greeting` (text) and `sample-parts`
(positive int). Output, one item per line:

    ITEM name=<name> value=<value> default=<default>     (one per user item, from get)
    SET value=<value>                                    (after set)
    INVALID rc=21                                        (a bad value is refused)
    RESET value=<value>                                  (after reset)
    UNKNOWN rc=30                                        (unknown name)
    LOGGER name=<name> enabled=<bool> level=<n>          (log.get of root and py_interop_logger)
    LOGGER_SET level=30                                  (log.set WARNING)
    LOGGER_RESET level=0                                 (log.reset)
    OK

Any failure prints a traceback on stderr and exits 1.
"""

import sys

import common


def main() -> int:
    args = common.client_args("grpc_helper 2.3.1 config interop client", timeout=5.0)
    timeout = args.timeout

    common.loopback_only()
    from grpc_helper import RpcClient, RpcException
    from grpc_helper_api import ConfigApiVersion, ConfigItemUpdate, ConfigUpdate, Filter, ResultCode
    from grpc_helper_api import LoggerApiVersion, LoggerConfig, LoggerLevel, LoggerUpdate
    from grpc_helper_api.config_pb2_grpc import ConfigServiceStub
    from grpc_helper_api.logger_pb2_grpc import LoggerServiceStub

    client = RpcClient(
        args.host,
        args.port,
        {
            "config": (ConfigServiceStub, ConfigApiVersion.CONFIG_API_CURRENT),
            "log": (LoggerServiceStub, LoggerApiVersion.LOGGER_API_CURRENT),
        },
        timeout=timeout,
        name=common.client_metadata("py-config"),
    )

    for item in client.config.get(Filter(), timeout=timeout).items:
        print(f"ITEM name={item.name} value={item.value} default={item.default_value}", flush=True)

    update = ConfigUpdate(items=[ConfigItemUpdate(name="sample-greeting", value="Bonjour")])
    reply = client.config.set(update, timeout=timeout)
    assert [i.name for i in reply.items] == ["sample-greeting"], reply
    print(f"SET value={reply.items[0].value}", flush=True)

    try:
        client.config.set(ConfigUpdate(items=[ConfigItemUpdate(name="sample-parts", value="zero")]), timeout=timeout)
        raise AssertionError("an invalid value was accepted")
    except RpcException as e:
        assert e.rc == ResultCode.ERROR_PARAM_INVALID, e
        print(f"INVALID rc={int(e.rc)}", flush=True)

    reply = client.config.reset(Filter(names=["sample-greeting"]), timeout=timeout)
    print(f"RESET value={reply.items[0].value}", flush=True)

    try:
        client.config.get(Filter(names=["no-such-item"]), timeout=timeout)
        raise AssertionError("an unknown item was accepted")
    except RpcException as e:
        assert e.rc == ResultCode.ERROR_ITEM_UNKNOWN, e
        print(f"UNKNOWN rc={int(e.rc)}", flush=True)

    for item in client.log.get(Filter(names=["", "py_interop_logger"]), timeout=timeout).items:
        print(f"LOGGER name={item.name} enabled={item.enabled} level={item.level}", flush=True)
    update = LoggerUpdate(items=[LoggerConfig(name="py_interop_logger", enabled=True, level=LoggerLevel.LVL_WARNING)])
    reply = client.log.set(update, timeout=timeout)
    print(f"LOGGER_SET level={reply.items[0].level}", flush=True)
    reply = client.log.reset(Filter(names=["py_interop_logger"]), timeout=timeout)
    print(f"LOGGER_RESET level={reply.items[0].level}", flush=True)

    print("OK", flush=True)
    return 0


if __name__ == "__main__":
    common.run(main)
