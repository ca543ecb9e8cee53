"""The ``report:`` section of the station file: what dispatch's reports need beyond the controller.

The rooms, their comfort window, day target and night floor come from the controller's circuits
(one source for the comfort contract); the season start from its calendar. What only the report
needs is here: the heated area, the heat meter's energy tag, the refund tiers of the city's rule,
and the tags of the first-week hourly report.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from gateway.config_base import Strict

TagName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]


class RefundTierSetting(Strict):
    """A day whose lowest daytime hourly mean is below ``below_c`` is refunded ``refund_pct``."""

    below_c: float = Field(ge=0, le=30, allow_inf_nan=False)
    refund_pct: float = Field(gt=0, le=100, allow_inf_nan=False)


ZIBO_TIERS = (RefundTierSetting(below_c=18, refund_pct=20), RefundTierSetting(below_c=16, refund_pct=50),
              RefundTierSetting(below_c=12, refund_pct=100))
"""The Zibo rule (domain brief): 16-18 °C 20 %, 12-16 °C 50 %, below 12 °C 100 % of the day's fee."""


class ReportSettings(Strict):
    """Figures and tags for ``heatgw report``."""

    heated_area_m2: float | None = Field(default=None, gt=0, le=10_000_000, allow_inf_nan=False)
    energy_tag: TagName | None = None
    refund_tiers: tuple[RefundTierSetting, ...] = ZIBO_TIERS
    first_week_tags: tuple[TagName, ...] = ()

    @model_validator(mode="after")
    def _tiers_ordered(self) -> ReportSettings:
        bounds = [tier.below_c for tier in self.refund_tiers]
        refunds = [tier.refund_pct for tier in self.refund_tiers]
        if bounds != sorted(bounds, reverse=True) or len(set(bounds)) != len(bounds):
            raise ValueError("refund_tiers: below_c must fall from one tier to the next")
        if refunds != sorted(refunds):
            raise ValueError("refund_tiers: a colder tier must refund at least as much")
        return self
