"""Thread-safe counters, gauges and histograms rendered in the Prometheus text format (version 0.0.4).

Small on purpose: the reward server needs a handful of series, not a client library. Each metric
holds its samples per label tuple; :meth:`Registry.render` writes ``# HELP``/``# TYPE`` headers and one
line per sample, histograms as cumulative ``_bucket{le=...}`` lines plus ``_sum`` and ``_count``.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Sequence

# Seconds from a cache hit (~0.1 ms) to a slow synthesis (~minutes).
LATENCY_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:  # noqa: A002
        self.name = name
        self.help = help
        self.label_names = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str] | None) -> tuple[str, ...]:
        labels = labels or {}
        if set(labels) != set(self.label_names):
            raise ValueError(
                f"metric {self.name} takes labels {list(self.label_names)}, got {sorted(labels)}"
            )
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    """A monotonically increasing count per label set."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:  # noqa: A002
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Gauge(_Metric):
    """A value read at render time from a callable (queue depth, hit ratio)."""

    kind = "gauge"

    def __init__(self, name: str, help: str, read: Callable[[], float]) -> None:  # noqa: A002
        super().__init__(name, help)
        self.read = read

    def render(self) -> list[str]:
        return [f"{self.name} {_number(self.read())}"]


class Histogram(_Metric):
    """Observations counted into fixed upper-bound buckets per label set."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),  # noqa: A002
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple[str, ...], list[float]] = {}  # bucket counts..., sum, count

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            series = self._series.setdefault(key, [0.0] * (len(self.buckets) + 2))
            if index < len(self.buckets):
                series[index] += 1
            series[-2] += value
            series[-1] += 1

    def count(self, **labels: str) -> float:
        with self._lock:
            series = self._series.get(self._key(labels))
            return series[-1] if series else 0.0

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        lines = []
        for key, series in items:
            running = 0.0
            for bound, n in zip(self.buckets, series, strict=False):
                running += n
                le = 'le="' + _number(bound) + '"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {_number(running)}")
            le = 'le="+Inf"'
            lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {_number(series[-1])}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(series[-2])}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {_number(series[-1])}")
        return lines


class Registry:
    """An ordered set of metrics rendered together."""

    def __init__(self) -> None:
        self.metrics: list[_Metric] = []

    def add(self, metric: _Metric) -> _Metric:
        if any(m.name == metric.name for m in self.metrics):
            raise ValueError(f"metric {metric.name} is registered twice")
        self.metrics.append(metric)
        return metric

    def render(self) -> str:
        """The whole registry as Prometheus exposition text."""
        lines: list[str] = []
        for metric in self.metrics:
            lines.extend(metric.header())
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
