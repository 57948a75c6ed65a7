"""What the image and the clusters need: the entrypoint, the service map, the Dockerfile,
k8s/, prometheus/, grafana/ and the proxy's config."""
