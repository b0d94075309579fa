"""The JSON Schema of the spec format, for editors (yaml-language-server) and CI: the static
``ModelSpec`` with every envelope replaced by the union of the registered types' params models."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, create_model

from .catalog import ATTENTION, BLOCKS, LAYERS
from .params import StageSpec
from .specs import ModelSpec


def _tagged(name: str, base: type[BaseModel], prefix: str, **fields: Any) -> type[BaseModel]:
    return create_model(f"{prefix}_{name.replace(':', '__')}", __base__=base, __doc__=base.__doc__,
                        type=(Literal[name], Field(description=f"{prefix} type: {name}.")), **fields)


def _union(models: list[type[BaseModel]]) -> Any:
    if len(models) == 1:  # a discriminated union of one member collapses; the Literal still checks the tag
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]


def _models() -> tuple[Any, Any, Any, Any, Any]:
    attention = _union([_tagged(e.name, e.obj, "Attention") for e in ATTENTION])
    blocks = _union([_tagged(e.name, e.obj.params, "Block", attn=(list[attention], Field(default_factory=list)))
                     for e in BLOCKS])
    layer_models = {}
    for e in LAYERS:
        fields = {"layers": (list["LayerUnion"], Field(min_length=1))} if e.obj.nested else {}
        layer_models[e.name] = (e, _tagged(e.name, e.obj, "Layer", **fields))
    layers = _union([m for _, m in layer_models.values()])
    for e, m in layer_models.values():
        if e.obj.nested:
            m.model_rebuild(_types_namespace={"LayerUnion": layers})
    norms = _union([m for e, m in layer_models.values() if e.kind == "norm"])
    acts = _union([m for e, m in layer_models.values() if e.kind == "activation"])
    return blocks, layers, norms, acts, attention


def json_schema() -> dict:
    """The schema document (draft 2020-12)."""
    blocks, layers, norms, acts, _ = _models()
    stage = create_model("Stage", __base__=StageSpec, __doc__=StageSpec.__doc__,
                         block=(blocks | None, StageSpec.model_fields["block"]),
                         blocks=(list[blocks] | None, StageSpec.model_fields["blocks"]),
                         pattern=(list[blocks] | None, StageSpec.model_fields["pattern"]))
    fields = ModelSpec.model_fields
    model = create_model("ModelSpec", __base__=ModelSpec, __doc__=ModelSpec.__doc__,
                         norm=(norms, fields["norm"]), activation=(acts, fields["activation"]),
                         block=(blocks | None, fields["block"]), stem=(list[layers], fields["stem"]),
                         stages=(list[stage], fields["stages"]), final=(list[layers], fields["final"]),
                         head=(list[layers], fields["head"]))
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "archkit spec"
    # ``base:`` is resolved by the loader before validation; editors must still accept it.
    schema["properties"]["base"] = {"type": "string", "description": "Spec file this one inherits from (deep merge)."}
    # A spec with base: may leave required fields to its base, and may set a block's keys without its
    # type (they merge over the base's block), so both checks apply only without one.
    required = schema.pop("required", [])
    props = schema["properties"]
    strict = {"block": props["block"]}
    props["block"] = {"type": ["object", "null"], "description": props["block"].get("description", "")}
    stage_def = schema["$defs"]["Stage"]
    strict_stage = stage_def["properties"]["block"]
    stage_def["properties"]["block"] = {"type": ["object", "null"], "description": strict_stage.get("description", "")}
    # per-block items merge over the stage's block, so each may give a few keys without a type
    for key in ("blocks", "pattern"):
        stage_def["properties"][key] = {"type": ["array", "null"], "items": {"type": "object"},
                                        "description": stage_def["properties"][key].get("description", "")}
    # a generator's key (regnet:) is expanded into stages before validation: a spec may give it instead of stages
    from .catalog import GENERATORS

    generators = [e.obj for _, e in GENERATORS.listing()]
    for gen in generators:
        own = {k: v for k, v in gen.params.model_json_schema().items() if k != "title"}
        schema.setdefault("$defs", {}).update(own.pop("$defs", {}))  # its nested models: refs from the root
        props[gen.name] = own
    schema["if"] = {"required": ["base"]}
    # a stage's block merges over the top-level block: complete only where there is none
    schema["else"] = {"anyOf": [{"required": required},
                                *({"required": [r for r in required if r != "stages"] + [gen.name]}
                                  for gen in generators)],
                      "properties": strict,
                      "if": {"not": {"required": ["block"]}},
                      "then": {"properties": {"stages": {"type": "array",
                                                         "items": {"properties": {"block": strict_stage}}}}}}
    return schema
