"""Custom Gymnasium environments, registered on import."""
