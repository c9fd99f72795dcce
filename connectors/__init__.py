"""Built-in connector plugins, one folder per external system (docs in docs/connectors/)."""
