"""The KServe target: InferenceServices on a kind cluster, their manifests and validation, cluster up/down."""
