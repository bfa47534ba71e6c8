"""MCAP recording of the cell's ROS 2 topics, as ``ros2 bag record`` (Jazzy's default storage) writes it.

rosbag2 is not on PyPI; :class:`~.recorder.Recorder` subscribes to topics in raw (CDR) form and
writes them with the ``mcap`` writer, each channel with its full ``ros2msg`` message definition
(:func:`~.schema.message_definition`), so Foxglove and ``ros2 bag info``/``play`` read the file.
"""

from __future__ import annotations

from .schema import message_definition
from .summary import bag_summary

__all__ = ["bag_summary", "message_definition"]
