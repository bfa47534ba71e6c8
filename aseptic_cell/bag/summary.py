"""``cellctl bag info``: what an MCAP file holds (from its summary section, or by a scan)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def bag_summary(path: str | Path) -> dict[str, Any]:
    """Topics (type, message count), message total, start/end (ns) and duration (s)."""
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        reader = make_reader(f)
        header = reader.get_header()
        summary = reader.get_summary()
        topics: dict[str, dict[str, Any]] = {}
        if summary is not None and summary.statistics is not None:
            st = summary.statistics
            for cid, ch in summary.channels.items():
                schema = summary.schemas.get(ch.schema_id)
                topics[ch.topic] = {"type": schema.name if schema else "", "encoding": ch.message_encoding,
                                    "count": int(st.channel_message_counts.get(cid, 0))}
            start, end, total = st.message_start_time, st.message_end_time, st.message_count
        else:  # no summary section (unfinished file): scan it
            start, end, total = 0, 0, 0
            for schema, ch, msg in reader.iter_messages():
                t = topics.setdefault(ch.topic, {"type": schema.name if schema else "",
                                                 "encoding": ch.message_encoding, "count": 0})
                t["count"] += 1
                total += 1
                start = msg.log_time if start == 0 else min(start, msg.log_time)
                end = max(end, msg.log_time)
    return {"file": str(path), "profile": header.profile, "library": header.library, "messages": int(total),
            "start_ns": int(start), "end_ns": int(end), "duration_s": (end - start) / 1e9 if total else 0.0,
            "topics": dict(sorted(topics.items()))}
