"""The `aztrain` command line: commands, their HTTP client, uploads and output. Speaks to the service only over HTTP."""
