"""Channel adapters: each converts platform payloads to core models and core replies back."""
