// Placeholder until the CPU device lands (same session).
