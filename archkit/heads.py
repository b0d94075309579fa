"""Head layer types beyond pooling and linear layers: CLIP's attention pooling (timm's ``attn_abs`` head)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from .complexity import Cost
from .params import LayerParams


class AttentionPool(LayerParams):
    """Attention pooling with a position embedding and a projection (CLIP's ResNet head).

    timm's ``AttentionPool2d``: the feature map's mean token attends to every position. The position
    embedding is sized for the feature map this spec's input gives and resampled for other sizes."""

    whole: ClassVar[bool] = True  # a timm-layout head of this one layer is the head (head.pos_embed, head.q)
    classifier: ClassVar[bool] = True  # its features are the classes (num_classes; 0 keeps the pooling)
    fixed_input_size: ClassVar[bool] = True  # its position embedding is sized for one input (timm's pretrained_cfg)
    global_pool: ClassVar[str] = "token"  # timm's name for its pooling
    features: int = Field(ge=0, le=1 << 24, description="Output features of the projection (classes); 0: none, "
                          "the attention's embedding is the output.")
    embed_dim: int | None = Field(None, ge=1, le=1 << 20, description="Width of queries, keys and values "
                                  "(default: the input channels).")
    head_dim: int = Field(64, ge=1, le=1 << 16, description="Width of each attention head.")
    qkv_separate: bool = Field(True, description="Separate q, k, v projections (CLIP's keys) rather than one qkv.")
    qkv_bias: bool = Field(True, description="Biases on the q, k, v projections.")

    def _sizes(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        if len(shape) != 3:
            raise ValueError(f"attention pooling needs a (channels, height, width) input, got {list(shape)}")
        c, h, w = shape
        embed = self.embed_dim or c
        if embed % self.head_dim:
            raise ValueError(f"needs an embedding width divisible by head_dim {self.head_dim}, got {embed} "
                             "(set head_dim or embed_dim)")
        return c, h * w, embed, self.features

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        _, _, embed, out = self._sizes(shape)
        return (out or embed,)

    def build(self, shape: tuple[int, ...], ctx: Any) -> Any:
        from .nn.attention_pool import AttentionPool2d

        c, _, embed, out = self._sizes(shape)
        return AttentionPool2d(c, (shape[1], shape[2]), out, embed, embed // self.head_dim, self.qkv_bias,
                               self.qkv_separate)

    def cost(self, shape: tuple[int, ...], ctx: Any) -> Cost:
        """Parameters; MACs: q, k, v over every token, the two attention products, the projection over
        every token (FlopCounterMode's count on the meta device, where attention runs its reference path;
        on a CPU it does not count the fused attention kernel); writes as the reference path makes them:
        the mean token, the tokens and their position sum, q, k, v, the scaled q and k, the scores and
        their softmax per head, the attention output and its contiguous copy, the projection."""
        c, n, embed, out = self._sizes(shape)
        tokens, heads = n + 1, embed // self.head_dim
        qkv = 3 * (c * embed + (embed if self.qkv_bias else 0))
        proj = embed * out + out if out else 0
        params = tokens * c + qkv + proj
        macs = 3 * tokens * c * embed + 2 * tokens * tokens * embed + tokens * embed * out
        writes = c + 2 * tokens * c + 7 * tokens * embed + 2 * heads * tokens * tokens + tokens * out
        return Cost(params, macs, writes, 0, 3 * tokens * embed + tokens * out)  # acts: q, k, v and the projection


HEAD_LAYERS: dict[str, type[LayerParams]] = {"attention_pool": AttentionPool}
