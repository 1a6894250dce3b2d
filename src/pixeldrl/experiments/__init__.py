"""Experiments built on the package: the paper's tables (``reproduce``), corruptions for the
robustness study, and the embedded demo.
"""
