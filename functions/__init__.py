"""Azure Functions blueprints: thin adapters from triggers to `aztrain.service.facade`."""
