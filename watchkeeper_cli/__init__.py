"""The ``watchkeeper`` command line: the top of the program.

It sits above the shared core (``watchkeeper``) and the components (``serving``,
``monitoring``, ``retrain``) and may import any of them; none of them imports it
(``tests/test_layering.py``). One module per command under ``commands/``.
"""
