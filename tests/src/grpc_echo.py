#!/usr/bin/env python3
"""gRPC echo server and client on grpcio (the C-core stack), the Python
twin of src/bin/grpc_echo.rs (same service, methods and plan steps).

    grpc_echo.py server                      # prints LISTENING <port>
    grpc_echo.py client HOST:PORT [PLAN]     # steps separated by ","; none: stdin

No generated code: generic handlers over raw bytes. A message is the
protobuf encoding of `{bytes payload = 1; uint32 n = 2;}`, built by hand.
"""

import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "echo.Echo"


def msg(i):
    payload = ("hello %d" % i).encode()
    return b"\x0a" + bytes([len(payload)]) + payload


def serve():
    def unary(request, context):
        return request

    def fail(request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    def server_stream(request, context):
        for _ in range(3):
            yield request

    def client_stream(request_iterator, context):
        last = b""
        for m in request_iterator:
            last = m
        return last

    def bidi(request_iterator, context):
        for m in request_iterator:
            yield m

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("LISTENING %d" % port, flush=True)
    server.wait_for_termination()


def step(channel, line):
    parts = line.split()
    if not parts:
        return 0, 0
    what = parts[0]
    n = int(parts[1]) if len(parts) > 1 else 1
    calls = failures = 0

    def call(fn):
        nonlocal calls, failures
        calls += 1
        try:
            fn()
        except grpc.RpcError:
            failures += 1

    path = lambda m: "/%s/%s" % (SERVICE, m)
    if what in ("unary", "fail", "missing"):
        method = {"unary": "Unary", "fail": "Fail", "missing": "Missing"}[what]
        stub = channel.unary_unary(path(method))
        for i in range(n):
            call(lambda: stub(msg(i), timeout=10))
    elif what == "server_stream":
        stub = channel.unary_stream(path("ServerStream"))
        for i in range(n):
            call(lambda: list(stub(msg(i), timeout=10)))
    elif what == "client_stream":
        stub = channel.stream_unary(path("ClientStream"))
        for i in range(n):
            call(lambda: stub(iter([msg(i * 10 + j) for j in range(3)]), timeout=10))
    elif what == "bidi":
        stub = channel.stream_stream(path("Bidi"))
        for i in range(n):
            call(lambda: list(stub(iter([msg(i * 10 + j) for j in range(3)]), timeout=10)))
    elif what == "concurrent":
        stub = channel.unary_unary(path("Unary"))
        pending = [stub.future(msg(i), timeout=20) for i in range(n)]
        for f in pending:
            call(f.result)
    elif what == "sleep":
        time.sleep(n / 1000.0)
    else:
        print("unknown step %r" % what, file=sys.stderr)
        failures += 1
    return calls, failures


def client(target, plan):
    # One channel, one HTTP/2 connection.
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=10)
    calls = failures = 0
    if plan:
        for s in plan.split(","):
            a, b = step(channel, s.strip())
            calls += a
            failures += b
    else:
        print("CONNECTED", flush=True)
        for line in sys.stdin:
            if line.strip() == "quit":
                break
            a, b = step(channel, line.strip())
            calls += a
            failures += b
            print("OK %d %d" % (calls, failures), flush=True)
    print("DONE %d %d" % (calls, failures), flush=True)
    channel.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["server"]:
        serve()
    elif sys.argv[1:2] == ["client"]:
        client(sys.argv[2], " ".join(sys.argv[3:]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
