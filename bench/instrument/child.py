"""One measured process: cold start (import + first invocation) or warm per-invocation time.

Usage: child.py MODULE cold|warm [N]; prints one JSON line.
"""

import importlib
import json
import sys
import time

EVENT = {
    "version": "2.0",
    "routeKey": "POST /predict",
    "rawPath": "/predict",
    "headers": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    "requestContext": {"http": {"method": "POST", "path": "/predict"}, "requestId": "r"},
    "body": json.dumps({"amount": 912.5, "age": 37}),
}


class Context:
    function_name = "bench"
    function_version = "1"
    memory_limit_in_mb = "1024"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:bench"
    aws_request_id = "req"

    def get_remaining_time_in_millis(self):
        return 30_000


def main() -> None:
    module_name, mode = sys.argv[1], sys.argv[2]
    t0 = time.perf_counter()
    module = importlib.import_module(module_name)
    t1 = time.perf_counter()
    handler = module.handler  # re-read: the contrib instrumentor patches the module
    handler(EVENT, Context())
    t2 = time.perf_counter()
    if mode == "cold":
        print(json.dumps({"import_ms": (t1 - t0) * 1e3, "first_ms": (t2 - t1) * 1e3}))
        return
    import statistics  # not before the cold measurement: it imports random, math, …

    n = int(sys.argv[3])
    for _ in range(200):
        handler(EVENT, Context())
    samples, cpu = [], []
    ctx = Context()
    for _ in range(n):
        s, c = time.perf_counter_ns(), time.thread_time_ns()
        handler(EVENT, ctx)
        cpu.append(time.thread_time_ns() - c)
        samples.append(time.perf_counter_ns() - s)
    print(
        json.dumps(
            {
                "median_us": statistics.median(samples) / 1e3,
                "mean_us": statistics.fmean(samples) / 1e3,
                # CPU of the calling thread: the function's own work, no network waiting
                # (thread_time has the kernel's tick resolution on some systems: a mean)
                "cpu_mean_us": statistics.fmean(cpu) / 1e3,
            }
        )
    )


if __name__ == "__main__":
    main()
