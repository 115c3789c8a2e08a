"""The prediction log database: tables, engine and migrations."""
