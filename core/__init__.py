"""The building blocks every layer shares: OpenTelemetry names, secrets, private files, retries,
self-metrics, configuration sections and the deployment manifest model. Imports nothing else of obsloop."""
