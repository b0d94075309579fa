"""Module names as data: where each part of a network lives, so its ``state_dict`` keys are a spec's choice.

A layout says which container holds the stem's layers, the stages and the head's layers (``""``: the
network's own children), how a stage and a block are named (``{i}`` the 0-based index, ``{n}`` the
1-based), and where a plain stage keeps its blocks. torchvision's (``conv1``, ``layer1.0``, ``fc``) and
timm's newer models' (``stem.conv1``, ``stages.0.blocks.0``, ``head.fc``) and timm's EfficientNets' (``conv_stem``,
``blocks.0.0``, ``classifier``) are presets; timm's RegNet
(``stem.conv``, ``s1.b1``, ``head.fc``) is ``{like: timm, stages: "", stage: "s{n}", blocks: "", block:
"b{n}"}``. The plan computes every module path from it; build, the model API, transfer and sharing read
only the plan's paths.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from .params import SpecModel, module_name_problem

CONTAINER = r"^([A-Za-z_][A-Za-z0-9_]*)?$"  # "" or one child name (no dots: one level)
PATTERN = r"^[A-Za-z0-9_]*(\{[in]\})?[A-Za-z0-9_]*$"  # a name, with {i} (0-based) or {n} (1-based) at most once


class Layout(SpecModel):
    """Where the stem, stages, blocks and head live (module paths = ``state_dict`` keys)."""

    like: Literal["torchvision", "timm", "efficientnet"] = Field("torchvision", description="The preset the keys not given "
                                                 "here come from.")
    stem: str = Field("", pattern=CONTAINER, max_length=64, description="Container of the stem's layers ('': the "
                      "network's own children, torchvision's conv1; 'stem': timm's stem.conv1).")
    stages: str = Field("", pattern=CONTAINER, max_length=64, description="Container of the stages ('': the "
                        "network's own children, torchvision's layer1; 'stages': timm's stages.0).")
    stage: str = Field("layer{n}", pattern=PATTERN, min_length=1, max_length=64, description="A stage's name: {i} "
                       "its 0-based index, {n} its 1-based (torchvision: layer{n}; timm: {i}; timm's RegNet: s{n}); "
                       "a stage's own name: key wins.")
    blocks: str = Field("", pattern=CONTAINER, max_length=64, description="Container of a plain (resnet) stage's "
                        "blocks inside the stage ('': the stage is its blocks; 'blocks': timm's stages.0.blocks.0).")
    block: str = Field("{i}", pattern=PATTERN, min_length=1, max_length=64, description="A block's name in its "
                       "stage: {i}, {n} (timm's RegNet: b{n}).")
    head: str = Field("", pattern=CONTAINER, max_length=64, description="Container of the head's layers ('': the "
                      "network's own children, torchvision's fc; 'head': timm's head.fc).")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        """Keys not given come from the preset ``like`` names."""
        if isinstance(data, dict) and isinstance(data.get("like", "torchvision"), str):
            preset = PRESETS.get(data.get("like", "torchvision"), {})
            return {**preset, **data}
        return data

    @field_validator("stem", "stages", "blocks", "head", "stage", "block")
    @classmethod
    def _a_module_name(cls, value: str, info: Any) -> str:
        """Every name a layout makes must be able to name a child module (torch's own are refused)."""
        if info.field_name == "block" and "{" not in value:
            raise ValueError(f"{value!r} names every block of a stage the same; put {{i}} (0-based) or {{n}} "
                             "(1-based) in it")
        fixed = value.replace("{i}", "0").replace("{n}", "1")
        problem = module_name_problem(fixed) if fixed and (fixed == value or value.startswith("_")) else None
        if problem:
            raise ValueError(problem)
        return value

    def stage_name(self, index: int, given: str | None = None) -> str:
        """Stage ``index``'s child name in its container (a stage's ``name:`` wins)."""
        return given or self.stage.format(i=index, n=index + 1)

    def stage_path(self, index: int, given: str | None = None) -> str:
        """Stage ``index``'s module path."""
        return join(self.stages, self.stage_name(index, given))

    def block_name(self, index: int) -> str:
        """Block ``index``'s child name in its stage (or the stage's blocks container)."""
        return self.block.format(i=index, n=index + 1)


PRESETS: dict[str, dict[str, str]] = {
    "torchvision": {},
    "timm": {"stem": "stem", "stages": "stages", "stage": "{i}", "blocks": "blocks", "head": "head"},
    # timm's EfficientNet and MobileNet models: conv_stem, bn1, blocks.0.0, conv_head, bn2, classifier
    "efficientnet": {"stages": "blocks", "stage": "{i}"},
}


def scheme(layout: Any) -> Layout | None:
    """A spec's ``layout:`` (a preset's name or a mapping, validated) as a ``Layout``; None if neither."""
    if isinstance(layout, Layout):
        return layout
    if isinstance(layout, str) and layout in PRESETS:
        if layout not in _PRESET_LAYOUTS:  # made once: the planner asks for it at every stage
            _PRESET_LAYOUTS[layout] = Layout(like=layout)  # type: ignore[arg-type]
        return _PRESET_LAYOUTS[layout]
    if isinstance(layout, dict):
        try:
            return Layout.model_validate(layout)
        except ValueError:  # (validation reports it)
            return None
    return None


_PRESET_LAYOUTS: dict[str, Layout] = {}


def join(container: str, name: str) -> str:
    """``container.name``, or ``name`` alone for the network's own children."""
    return f"{container}.{name}" if container else name


def _form(value: Any) -> str:
    return "scheme" if isinstance(value, (dict, Layout)) else "preset"


# a spec's layout: key: a preset's name, or a mapping (validated as the one form it is: one error, not two)
LayoutField = Annotated[Union[Annotated[Literal["torchvision", "timm", "efficientnet"], Tag("preset")],
                              Annotated[Layout, Tag("scheme")]], Discriminator(_form)]
