"""Built-in connector plugins: one package per external system, each in the same folder shape
(``__init__`` with the hook implementations, ``settings``, ``connector``, ``simulator``)."""
