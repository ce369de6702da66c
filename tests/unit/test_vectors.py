"""Vectors in pgvector's binary format (agentchat.embeddings.vectors) and the search benchmark's
helpers, without a database."""

from __future__ import annotations

import math
import struct

import pytest

from agentchat.bench.search import DIMENSION, percentile, synthetic
from agentchat.embeddings.search import EF_SEARCH, ef_search
from agentchat.embeddings.vectors import to_vector


def float4(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


def test_to_vector_keeps_float4_values_exactly_and_rounds_doubles_as_the_server_would() -> None:
    values = [0.1, -0.0, 1e-45, 3.4e38, -1.5, 1 / 3]
    vector = to_vector(values)
    assert vector.to_list() == [float4(x) for x in values]
    assert math.copysign(1.0, vector.to_list()[1]) == -1.0  # -0.0 stays negative
    again = to_vector(vector.to_list())  # a float4 value through the adapter: unchanged
    assert again.to_list() == vector.to_list()
    assert to_vector(tuple(values)).to_list() == vector.to_list()  # any sequence


def test_the_binary_form_is_pgvectors_dimension_then_big_endian_float4() -> None:
    binary = to_vector([1.0, -2.5]).to_binary()
    assert binary == struct.pack(">HHff", 2, 0, 1.0, -2.5)


@pytest.mark.parametrize(
    "values",
    [[0.1, math.nan], [math.inf, 0.0], [0.0, -math.inf], [1e39, 0.0], [-1e300]],
    ids=["nan", "inf", "-inf", "too large for float4", "far too large"],
)
def test_to_vector_refuses_what_the_server_would_refuse_for_the_whole_batch(
    values: list[float],
) -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        to_vector(values)


def test_to_vector_refuses_components_that_are_not_numbers() -> None:
    with pytest.raises(ValueError, match=r"not a number \(str\)"):
        to_vector([0.1, "0.2"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"not a number \(NoneType\)"):
        to_vector([0.1, None])  # type: ignore[list-item]


def test_search_keeps_at_least_ef_search_candidates_and_never_fewer_than_its_limit() -> None:
    assert ef_search(10) == EF_SEARCH
    assert ef_search(EF_SEARCH + 500) == EF_SEARCH + 500


def test_the_search_benchmarks_vectors_are_deterministic_unit_vectors() -> None:
    first, again, other = synthetic(50, seed=1), synthetic(50, seed=1), synthetic(5, seed=2)
    assert first.shape == (50, DIMENSION) and str(first.dtype) == "float32"
    assert (first == again).all()
    assert not (first[:5] == other).all()
    norms = (first.astype("float64") ** 2).sum(axis=1) ** 0.5
    assert all(abs(n - 1.0) < 1e-5 for n in norms)


def test_percentile_is_the_nearest_rank() -> None:
    samples = [float(x) for x in range(1, 101)]
    assert percentile(samples, 0.5) == 50.0
    assert percentile(samples, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
