"""sscell_live: streaming operando monitor for synchrotron tomography of Li-metal solid-state cells."""

__version__ = "0.1.0"
