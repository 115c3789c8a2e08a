"""The retraining job and model lifecycle.

Not built yet: see the Status section of the README.
"""
