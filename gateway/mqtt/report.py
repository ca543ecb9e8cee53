"""Report by exception: which samples are worth sending over a cellular link.

A sample is reported when it says something new: its tag's first sample, a quality or reason
change, a move beyond the tag's ``deadband`` from the last REPORTED value (so a slow drift is
reported once it adds up, not lost step by step), or when the tag has not been reported for
``integrity_interval_s``. The last rule is what lets a receiver tell "unchanged" from "lost".

Samples stop arriving altogether when a device is lost (the poller publishes it BAD once, then
backs off) or when polling stalls. ``overdue`` covers that case, so the integrity promise holds
for every tag: a tag that has not been reported for the integrity interval, and whose samples
stopped coming, is reported again as it is known now: BAD with its reason, or STALE if its last
sample was good.

Pure: time comes from the samples and from the caller, so the rules are tested without a clock.
"""

from __future__ import annotations

from collections.abc import Mapping

from drivers.base import Quality, Reason
from gateway.samples import Sample
from gateway.tag_traits import TagTraits


class ReportFilter:
    """Remembers the last reported sample per tag and decides about each new one."""

    def __init__(self, traits: Mapping[str, TagTraits], integrity_interval_s: float) -> None:
        self._traits = traits  # the station's shared map (``GatewayConfig.tag_traits``), not a copy
        self._integrity = integrity_interval_s
        self._reported: dict[str, Sample] = {}
        self._seen: dict[str, float] = {}  # newest sample time per tag, reported or not

    def retune(self, traits: Mapping[str, TagTraits]) -> None:
        """Take the tags' traits after a reload: a tag that stays keeps its last reported sample
        (no extra report, the deadband counts on from it); a tag that is gone is forgotten, so it
        is never reported overdue."""
        self._traits = traits
        self._reported = {tag: sample for tag, sample in self._reported.items() if tag in traits}
        self._seen = {tag: seen for tag, seen in self._seen.items() if tag in traits}

    def offer(self, sample: Sample) -> bool:
        """Whether ``sample`` is to be reported; if so it becomes the tag's last reported sample.

        Written for speed (it sees every polled value): the common "nothing new" case returns
        after a few comparisons.
        """
        tag = sample.tag
        self._seen[tag] = sample.timestamp
        last = self._reported.get(tag)
        if (last is not None and sample.timestamp - last.timestamp < self._integrity
                and sample.quality is last.quality and sample.reason == last.reason):
            new, old = sample.value, last.value
            if new == old:
                return False
            traits = self._traits.get(tag)
            if (traits is not None and traits.deadband > 0 and new is not None and old is not None
                    and not isinstance(new, bool) and abs(new - old) <= traits.deadband):
                return False
        self._reported[tag] = sample
        return True

    def overdue(self, now: float) -> list[Sample]:
        """Samples to report for tags that went silent: not reported, and no sample seen, for too long.

        The returned samples carry ``now`` as their time and become the tags' last reported ones.
        """
        due: list[Sample] = []
        reported_before = now - self._integrity
        for tag, last in self._reported.items():
            if last.timestamp > reported_before:
                continue
            traits = self._traits.get(tag)
            if traits is not None and now - self._seen[tag] < traits.max_silence_s:
                continue
            if last.quality is Quality.GOOD:
                sample = Sample(tag, last.value, now, Quality.STALE, Reason.NOT_REFRESHED.value)
            else:
                sample = Sample(tag, last.value, now, last.quality, last.reason)
            self._reported[tag] = sample
            due.append(sample)
        return due
