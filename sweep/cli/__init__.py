"""The ``gansweep`` command line: the command registry and ``main`` (``main``), the
commands of single runs (``train``) and of sweeps (``sweep``), ``ls``/``best``
(``listing``) and the demo (``demo``).

Imports: anything of gansweep; nothing imports it but ``gansweep.__main__``.
"""
