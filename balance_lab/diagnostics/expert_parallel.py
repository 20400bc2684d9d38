"""Expert-parallel degrees worth reporting a straggler factor for (training metrics and the report)."""


def ep_degrees(n_experts: int) -> list[int]:
    """Every power of two from 2 to E that divides E (E experts placed contiguously on P ranks)."""
    return [p for p in (2**i for i in range(1, n_experts.bit_length())) if n_experts % p == 0]


def reference_degree(n_experts: int) -> int | None:
    """The degree a single figure or note shows: 8 where it divides E, else the largest (None below 2 experts)."""
    degrees = ep_degrees(n_experts)
    return 8 if 8 in degrees else (degrees[-1] if degrees else None)
