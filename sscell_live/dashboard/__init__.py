"""Dashboard (pyqtgraph): live plots of an experiment metrics and alarm level."""
