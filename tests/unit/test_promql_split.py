"""The operand splitter the Prometheus test uses on alert expressions."""

from __future__ import annotations

import pytest

from tests.promql import operands


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('up{job="gatekeeper"} == 0', ['up{job="gatekeeper"}']),
        ("a / b > 0.01", ["a / b"]),
        ("x > 60 and y == 1", ["x", "y"]),
        ("sum by (job) (rate(s[15m])) == 0\nand on () bh == 1", ["sum by (job) (rate(s[15m]))", "bh"]),
        ("(a or b * 0) / b > bool 2 * c", ["(a or b * 0) / b", "2 * c"]),
        ('m{code!="OK", x=~"a|b"} >= 1e3', ['m{code!="OK", x=~"a|b"}']),
        ("sort_desc(x) unless ignoring (le) mandatory", ["sort_desc(x)", "mandatory"]),
        ("increase(a[5m]) > 0 or vector(0)", ["increase(a[5m])", "vector(0)"]),
        (
            "histogram_quantile(0.99, sum by (le) (rate(b[5m]))) > 0.1",
            ["histogram_quantile(0.99, sum by (le) (rate(b[5m])))"],
        ),
    ],
)
def test_operands(expr: str, expected: list[str]) -> None:
    assert operands(expr) == expected
