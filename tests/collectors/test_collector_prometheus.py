"""Knative (both naming schemes) and OpenFaaS exposition text into OTLP metrics."""

from __future__ import annotations

import http.server
import threading

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from obsloop.collectors import selfmetrics
from obsloop.collectors.prometheus import PrometheusScraper
from obsloop.core import semconv

KNATIVE_OPENCENSUS = """\
# HELP revision_request_count The number of requests that are routed to queue-proxy
# TYPE revision_request_count counter
revision_request_count{configuration_name="fraud",container_name="queue-proxy",namespace_name="ml",pod_name="fraud-00001-deployment-6f",response_code="200",response_code_class="2xx",revision_name="fraud-00001",service_name="fraud"} 12
# HELP revision_request_latencies The response time in millisecond
# TYPE revision_request_latencies histogram
revision_request_latencies_bucket{namespace_name="ml",response_code="200",revision_name="fraud-00001",service_name="fraud",le="5"} 2
revision_request_latencies_bucket{namespace_name="ml",response_code="200",revision_name="fraud-00001",service_name="fraud",le="50"} 9
revision_request_latencies_bucket{namespace_name="ml",response_code="200",revision_name="fraud-00001",service_name="fraud",le="+Inf"} 12
revision_request_latencies_sum{namespace_name="ml",response_code="200",revision_name="fraud-00001",service_name="fraud"} 310.5
revision_request_latencies_count{namespace_name="ml",response_code="200",revision_name="fraud-00001",service_name="fraud"} 12
"""
KNATIVE_OTEL = """\
# HELP kn_serving_invocation_duration_seconds The duration of the task execution
# TYPE kn_serving_invocation_duration_seconds histogram
kn_serving_invocation_duration_seconds_bucket{k8s_namespace_name="ml",kn_revision_name="fraud-00002",kn_service_name="fraud",http_response_status_code="200",le="0.1"} 4
kn_serving_invocation_duration_seconds_bucket{k8s_namespace_name="ml",kn_revision_name="fraud-00002",kn_service_name="fraud",http_response_status_code="200",le="+Inf"} 5
kn_serving_invocation_duration_seconds_sum{k8s_namespace_name="ml",kn_revision_name="fraud-00002",kn_service_name="fraud",http_response_status_code="200"} 0.9
kn_serving_invocation_duration_seconds_count{k8s_namespace_name="ml",kn_revision_name="fraud-00002",kn_service_name="fraud",http_response_status_code="200"} 5
# TYPE kn_serving_queue_depth gauge
kn_serving_queue_depth{kn_service_name="fraud",kn_revision_name="fraud-00002"} 3
"""
OPENFAAS = """\
# HELP gateway_function_invocation_total Function metrics
# TYPE gateway_function_invocation_total counter
gateway_function_invocation_total{code="200",function_name="score.openfaas-fn"} 40
# HELP gateway_functions_seconds Function time taken
# TYPE gateway_functions_seconds histogram
gateway_functions_seconds_bucket{code="200",function_name="score.openfaas-fn",le="0.5"} 30
gateway_functions_seconds_bucket{code="200",function_name="score.openfaas-fn",le="+Inf"} 40
gateway_functions_seconds_sum{code="200",function_name="score.openfaas-fn"} 12.5
gateway_functions_seconds_count{code="200",function_name="score.openfaas-fn"} 40
# HELP gateway_service_count Current count of replicas for function
# TYPE gateway_service_count gauge
gateway_service_count{function_name="score.openfaas-fn"} 2
this line is not exposition format
"""


def serve(texts: dict[str, str]):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = texts[self.path].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def metrics_by_name(sink) -> dict:
    found = {}
    for signal, payload in sink.payloads:
        assert signal == "metrics"
        for rm in ExportMetricsServiceRequest.FromString(payload).resource_metrics:
            resource = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    found[metric.name] = (resource, metric)
    return found


def test_scrape_both_knative_schemes_and_openfaas(sink):
    server, url = serve({"/kn1": KNATIVE_OPENCENSUS, "/kn2": KNATIVE_OTEL, "/faas": OPENFAAS})
    try:
        scraper = PrometheusScraper([f"{url}/kn1", f"{url}/kn2", f"{url}/faas"], sink)
        malformed = selfmetrics.MALFORMED.labels("prometheus")._value.get()
        assert scraper.poll_once() == 7
        assert selfmetrics.MALFORMED.labels("prometheus")._value.get() == malformed + 1
    finally:
        server.shutdown()
        server.server_close()
    found = metrics_by_name(sink)
    resource, latencies = found["revision_request_latencies"]
    assert resource[semconv.CLOUD_PLATFORM] == semconv.PLATFORM_KNATIVE
    assert (resource[semconv.FAAS_NAME], resource[semconv.FAAS_VERSION]) == ("fraud", "fraud-00001")
    point = latencies.histogram.data_points[0]
    assert list(point.explicit_bounds) == [5.0, 50.0]
    assert list(point.bucket_counts) == [2, 7, 3]
    assert (point.sum, point.count) == (310.5, 12)
    resource, otel = found["kn_serving_invocation_duration_seconds"]
    assert (resource[semconv.FAAS_NAME], resource[semconv.FAAS_VERSION]) == ("fraud", "fraud-00002")
    assert list(otel.histogram.data_points[0].bucket_counts) == [4, 1]
    count = found["revision_request_count"][1]
    assert count.sum.is_monotonic and count.sum.data_points[0].as_double == 12
    resource, faas = found["gateway_functions_seconds"]
    assert resource[semconv.CLOUD_PLATFORM] == semconv.PLATFORM_OPENFAAS
    assert resource[semconv.FAAS_NAME] == "score.openfaas-fn"
    assert list(faas.histogram.data_points[0].bucket_counts) == [30, 10]
    assert found["gateway_service_count"][1].gauge.data_points[0].as_double == 2
    codes = {kv.key: kv.value.string_value
             for kv in found["gateway_function_invocation"][1].sum.data_points[0].attributes}
    assert codes == {"code": "200"}


def test_5xx_scrape_is_retried(sink):
    calls = []

    def flaky(url, timeout):
        import urllib.error
        calls.append(url)
        if len(calls) == 1:
            raise urllib.error.HTTPError(url, 503, "unavailable", {}, None)
        return OPENFAAS

    assert PrometheusScraper(["http://127.0.0.1:1/metrics"], sink, fetch=flaky,
                             sleep=lambda s: None).poll_once() == 3
    assert len(calls) == 2
