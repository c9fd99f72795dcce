"""Built-in pipeline plugins: one package per plugin, registered through the same hooks as third-party ones."""
