"""CityHub: the integration hub behind a city operations centre.

Connectors bring events in from the city's systems, the pipeline turns them into one unified NATS stream,
and the Rust core (:mod:`hub._core`, private) does the hot path. The public API is the typed modules of this
package; import from them, never from ``hub._core``.
"""

from hub._core import version as core_version

__version__ = "0.1.0"
__all__ = ["__version__", "core_version"]
