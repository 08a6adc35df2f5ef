"""/metrics as the Prometheus text format or OpenMetrics, with each series' name and labels formatted once.

prometheus_client's encoders validate, escape and sort every label of every sample at each scrape: about 5 ms
for the exporter's two hundred series, all of it holding the GIL that reading the log needs, 20 times a second
when a dashboard polls. Here a series' text up to its value is remembered from one scrape to the next (label
values are bounded, so the memory is too), and our own families are read without building the library's Metric
objects. The output is the library's byte for byte (tests/test_exposition.py); a format, an escaping or a kind
of sample this module does not render goes to the library's encoder, as before."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter import patterns

Values = dict[Any, float]
"""Label values (a tuple in the order of the family's labels) -> sample value."""

_METRIC_NAME: Final = patterns.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME: Final = patterns.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
"""Names that every escaping scheme leaves as they are (the only ones rendered here)."""
_KEEPS_NAMES: Final = frozenset((openmetrics.UNDERSCORES, openmetrics.ALLOWUTF8))
_go_float: Final[Callable[[float], str]] = floatToGoString
"""A sample value as the library writes it (as Go does: 1e+06, +Inf, NaN)."""
MAX_SERIES: Final = 65536
"""Series texts remembered; past that the memory starts afresh."""


class Rows(Protocol):
    """A collector that can hand its families over as rows: (name, help, counter, label names, values)."""

    def rows(self) -> list[tuple[str, str, bool, Sequence[str], Values]]: ...


class _Unsupported(Exception):
    """Something only the library's encoder renders."""


class Exposition:
    """Renders the collectors, in their order, for a scrape's Accept header."""

    def __init__(self, collectors: Sequence[Collector]) -> None:
        self._collectors = tuple(collectors)
        self.registry = CollectorRegistry(auto_describe=False)
        """The same collectors, for the library's encoders."""
        for collector in self._collectors:
            self.registry.register(collector)
        self._series: dict[tuple[Any, ...], str] = {}
        """A series' text up to its value (the same in both formats), by sample name, label names and values."""

    def render(self, accept: str) -> tuple[bytes, str]:
        """The page and its content type."""
        encoder, content_type = choose_encoder(accept)
        om = _format(encoder)
        if om is not None:
            try:
                return self._render(om).encode(), content_type
            except _Unsupported:
                pass
        return encoder(self.registry), content_type

    def _render(self, om: bool) -> str:
        out: list[str] = []
        for collector in self._collectors:
            rows: Callable[[], Iterable[tuple[str, str, bool, Sequence[str], Values]]] | None = getattr(
                collector, "rows", None
            )
            families = rows() if rows is not None else _rows_of(collector.collect())
            for name, help_text, counter, labels, values in families:
                self._family(out, om, name, help_text, counter, labels, values)
        if om:
            out.append("# EOF\n")
        return "".join(out)

    def _family(
        self,
        out: list[str],
        om: bool,
        name: str,
        help_text: str,
        counter: bool,
        labels: Sequence[str],
        values: Values,
    ) -> None:
        out.append(_head(om, name, help_text, counter))
        sample = name if not counter or name.endswith("_total") else name + "_total"
        series, labels = self._series, tuple(labels)
        for key, value in values.items():
            text = series.get((sample, labels, key))
            if text is None:
                text = self._remember(sample, labels, key)
            out.append(text)
            out.append(_go_float(value))
            out.append("\n")

    def _remember(self, sample: str, labels: tuple[str, ...], key: Any) -> str:
        if len(labels) != len(key) or any(_LABEL_NAME.fullmatch(label) is None for label in labels):
            raise _Unsupported
        pairs = sorted(zip(labels, key, strict=True))
        text = sample + ("{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}" if pairs else "") + " "
        if len(self._series) >= MAX_SERIES:
            self._series.clear()
        self._series[sample, labels, key] = text
        return text


def _format(encoder: Callable[..., bytes]) -> bool | None:
    """Whether choose_encoder's encoder is OpenMetrics 1.0 (True) or the text format (False), with an escaping
    that keeps our names as they are; None for any other."""
    func = getattr(encoder, "func", encoder)
    keywords: dict[str, Any] = getattr(encoder, "keywords", {})
    if keywords.get("escaping", openmetrics.UNDERSCORES) not in _KEEPS_NAMES:
        return None
    if func is generate_latest:
        return False
    if func is openmetrics.generate_latest and keywords.get("version") == "1.0.0":
        return True
    return None


@functools.lru_cache(maxsize=256)
def _head(om: bool, name: str, help_text: str, counter: bool) -> str:
    """The family's HELP and TYPE lines: the text format names a counter with its _total, OpenMetrics without."""
    if _METRIC_NAME.fullmatch(name) is None:
        raise _Unsupported
    base = name[: -len("_total")] if counter and name.endswith("_total") else name
    shown = base if om else (base + "_total" if counter else base)
    escaped = help_text.replace("\\", r"\\").replace("\n", r"\n")
    if om:
        escaped = escaped.replace('"', r"\"")
    return f"# HELP {shown} {escaped}\n# TYPE {shown} {'counter' if counter else 'gauge'}\n"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _rows_of(metrics: Iterable[Metric]) -> Iterator[tuple[str, str, bool, Sequence[str], Values]]:
    """Rows of the library's Metric objects: counters and gauges of plain samples only."""
    for metric in metrics:
        if metric.type not in ("counter", "gauge") or metric.unit:
            raise _Unsupported
        counter = metric.type == "counter"
        sample_name = metric.name + "_total" if counter else metric.name
        names: tuple[str, ...] | None = None
        values: Values = {}
        for s in metric.samples:
            if s.name != sample_name or s.timestamp is not None or s.exemplar or s.native_histogram:
                raise _Unsupported
            labels = tuple(s.labels)
            if names is None:
                names = labels
            elif labels != names:
                raise _Unsupported
            values[tuple(s.labels.values())] = s.value
        yield (sample_name if counter else metric.name, metric.documentation, counter, names or (), values)
