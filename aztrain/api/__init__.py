"""The HTTP API's wire contract: request and response models shared by `functions/` and the CLI's client."""
