"""The sweep specs that ship with gansweep (package data, read through importlib.resources;
``gansweep specs`` lists them).

Imports: nothing (data only).
"""
