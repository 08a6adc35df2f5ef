"""The metrics stage: the counter store and how one Event updates it (`store`), its validated save and restore
(`saved`), and the metric families served from it (`families`)."""

from exporter.metrics.store import MAX_REJECTION_SERIES, RECENT_REJECTIONS, Metrics, RecentRejection

__all__ = ["MAX_REJECTION_SERIES", "RECENT_REJECTIONS", "Metrics", "RecentRejection"]
