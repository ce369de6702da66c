"""Vectors on the wire in pgvector's binary format, through pgvector's psycopg 3 adapter.

    register(conn)                                 # once per connection: public.vector in binary
    conn.execute("... %(v)b::public.vector ...", {"v": to_vector([0.1, 0.2, 0.3])})

The binary form is what the server stores (a dimension, then float4 components in network
order): no decimal text to format on our side or to parse on the server's, and a vector read back
is bit for bit the one sent. Components are float4 in PostgreSQL, so :func:`to_vector` rounds a
Python float to float4 once, here, as the server would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pgvector import Vector
from pgvector.psycopg.vector import register_vector_info
from psycopg.types import TypeInfo

from agentchat import _db, errors

__all__ = ["Vector", "register", "to_vector"]


def register(conn: _db.Connection) -> TypeInfo:
    """Dump :class:`Vector` parameters and load ``public.vector`` columns in binary on *conn*
    (one catalog look-up; the extension lives in ``public``, as agentchat installs it); the
    type's description (its oid: ``COPY``'s ``set_types``)."""
    info = TypeInfo.fetch(conn, "public.vector")
    if info is None:
        raise errors.ConfigError(
            "pgvector's vector type is not in this database", fix="agentchat install"
        )
    register_vector_info(conn, info)
    return info


def to_vector(values: Sequence[float]) -> Vector:
    """*values* as a float4 :class:`Vector`; refuses NaN, infinities and components too large
    for float4 (``ValueError``), which the server would refuse for the whole batch."""
    try:
        vector = Vector(values if isinstance(values, list) else list(values))
    except (TypeError, ValueError) as exc:
        odd = next((x for x in values if not isinstance(x, (int, float))), None)
        raise ValueError(
            f"the vector has a component that is not a number ({type(odd).__name__})"
        ) from exc
    # a sum of float4 components is finite exactly when each is (no float4 sum of at most
    # 16,000 components overflows a double); out-of-range floats became inf in float4 above
    if not math.isfinite(sum(vector.to_list())):
        raise ValueError("the vector has NaN or infinite components (or too large for float4)")
    return vector
