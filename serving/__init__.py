"""The prediction server: Flask app factory, validation, prediction log, metrics."""
