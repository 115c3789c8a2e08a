"""The monitor service (drift, out-of-distribution, data quality, accuracy).

Not built yet: see the Status section of the README.
"""
