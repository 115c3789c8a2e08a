"""Tables of the prediction log, as SQLAlchemy Core metadata.

This module describes the schema the code expects; migrations in
``watchkeeper/db/migrations`` create it, and a test checks the two agree.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

requests = sa.Table(
    "requests",
    metadata,
    sa.Column("request_id", sa.String(32), primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("endpoint", sa.String(64), nullable=False),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("status_code", sa.SmallInteger, nullable=False),
    sa.Column("latency_seconds", sa.Float, nullable=False),
    sa.Column("model_version", sa.String(64)),
    sa.Column("n_items", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.JSON),
    sa.Column("body", sa.Text, comment="rejected requests only, truncated"),
    sa.Column("client_request_id", sa.String(128)),
)

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("prediction_id", sa.String(48), nullable=False, unique=True),
    sa.Column("request_id", sa.String(32), nullable=False, index=True),
    sa.Column("item_index", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("model_version", sa.String(64), nullable=False, index=True),
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("prediction", sa.Float, nullable=False),
    sa.Column("lower", sa.Float, nullable=False),
    sa.Column("upper", sa.Float, nullable=False),
)
