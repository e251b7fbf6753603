// Placeholder until the CUDA device lands (same session).
