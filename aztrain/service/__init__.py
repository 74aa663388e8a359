"""The service layer: the `ControlPlane` facade, its use cases, their ports, settings and the composition root."""
