"""The processes of a scaled-out deployment: ingest workers (Kafka to ClickHouse) and detector
workers (windows to detections to feedback), on one Kafka-consumer base. Application layer:
they wire the layers below together, as ``obsloop serve`` does in one process."""
