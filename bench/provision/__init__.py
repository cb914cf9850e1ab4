"""Per-runtime environments and images, built or reused by content hash, and the facts they cost."""
