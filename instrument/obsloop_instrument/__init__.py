"""In-function OpenTelemetry instrumentation for serverless AI handlers."""
