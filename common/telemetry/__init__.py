"""What the services tell operators: Prometheus metrics, OpenTelemetry traces, JSON logs."""
