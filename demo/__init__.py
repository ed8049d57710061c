"""``make run``'s world: a simulated serverless fleet (:mod:`obsloop.demo.loadgen`), a GitOps
repository and an on-call receiver (:mod:`obsloop.demo.scenario`). Not part of the pipeline:
the demo, the benchmarks and the tests drive obsloop with it."""
