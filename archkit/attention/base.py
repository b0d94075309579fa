"""What attention types share: timm's width rounding and reduced-width parameters."""

from pydantic import Field

from ..params import AttentionParams


def make_divisible(value: float, divisor: int, min_value: int | None = None, round_limit: float = 0.0) -> int:
    """timm's ``make_divisible``: ``value`` rounded to the nearest multiple of ``divisor`` (at least
    ``min_value``, default ``divisor``), one more multiple if rounding lost over ``1 - round_limit``."""
    floor = divisor if min_value is None else min_value
    new = max(floor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < round_limit * value else new


class _Reduced(AttentionParams):
    """Attention with a reduced hidden width, timm's ``rd_*`` parameters."""

    rd_ratio: float = Field(1 / 16, gt=0, le=1, description="Hidden width relative to the channels.")
    rd_channels: int | None = Field(None, ge=1, le=1 << 20, description="Hidden width; overrides rd_ratio.")
    rd_divisor: int = Field(8, ge=1, le=256, description="Round the hidden width to a multiple of this.")

    def reduced(self, channels: int) -> int:
        """The hidden width for ``channels``, as timm computes it."""
        return self.rd_channels or make_divisible(channels * self.rd_ratio, self.rd_divisor)
