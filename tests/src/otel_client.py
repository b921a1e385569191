"""HTTP client instrumented with the OpenTelemetry SDK, for the agent's
trace-context test: one CLIENT span per URL, its context injected as W3C
`traceparent` into the request (urllib, a new connection per request).

Usage: python otel_client.py [--unsampled] URL [URL...]

Prints `SENT <trace id> <span id> <status> <traceparent>` per URL. With
`--unsampled` the SDK's sampler is always-off: the header says "not
sampled" (flags 00).
"""

import sys
import urllib.error
import urllib.request

from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from opentelemetry.trace import SpanKind


def main():
    args = sys.argv[1:]
    sampler = ALWAYS_ON
    if args and args[0] == "--unsampled":
        sampler = ALWAYS_OFF
        args = args[1:]
    trace.set_tracer_provider(TracerProvider(sampler=sampler))
    tracer = trace.get_tracer("agent-tests-otel-client")
    for url in args:
        with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as span:
            headers = {}
            propagate.inject(headers)
            req = urllib.request.Request(url, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    r.read()
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
            ctx = span.get_span_context()
            print(
                "SENT %032x %016x %d %s"
                % (ctx.trace_id, ctx.span_id, status, headers.get("traceparent", "")),
                flush=True,
            )


if __name__ == "__main__":
    main()
