"""Import the released SS2A artefacts (``ssv2a.json``, ``ssv2a.pth``, ``agg.pth``) into our modules.

The released key layout (reference notes §1.5) was derived from the released module definitions, not
from the files themselves, so the importer is deliberately tolerant where the derivation is least
certain: the residual MLPs are matched *by order and by tensor rank* (Linear weights are 2-D,
LayerNorm weights 1-D), not by Sequential index, so Dropout/GELU positions do not matter. Every
other key is translated by an explicit rule; an unknown key, a missing key or a shape that does not
match our config raises :class:`foleykit.errors.InputError` naming the key and both shapes.

Layouts (theirs → ours):

* ``manifold_state``: ``{clip,clap}_encoder.model.0`` → ``{clip,clap}_projector.input_proj``;
  ``….model.1.model.<n>`` (MLP) → ``….trunk.<k>``; ``out_mu``/``out_sigma`` → ``mu_head``/
  ``logvar_head``; ``logit_scale`` → ``logit_scale`` (``self_logit_scale`` is unused and dropped).
* ``generator_state``: the same MLP layout → ``reconstructor.*`` (χ lives inside our manifold).
* ``remixer_state``: ``styler.in_proj`` → ``input_proj``; ``styler.pred_token`` →
  ``readout_tokens``; ``styler.style_encoder.encoder.<i>.{esa,ffn}`` →
  ``encoder.layers.<i>.{attention,feed_forward}``; ``styler.head_{mu,sigma}.model.{0,1}`` →
  ``{mu,logvar}_head.hidden.{fc,norm}``; ``styler.out_{mu,sigma}`` → ``{mu,logvar}_head.out``.
* ``agg.pth``: ``pe.pe`` [R, 1, D] → ``position_table`` [R, D]; ``encoder.encoder.<i>`` →
  ``encoder.layers.<i>``; ``pred_token``/heads as for the remixer.

The released weights were trained with the key softmax over head features and with every one of the
64 slots attended to, empty ones carrying the released encoders' code of an empty source, so
``reference_compatible=True`` (the default for imports) sets ``key_softmax="features"`` and
``attend_to_padding=True``, and :func:`foleykit.modules.cycle_mix.cycle_mix` then feeds the Remixer
the released tokens (empty slots included); our own models use Shen et al.'s token softmax and a
padding mask.
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError
from .manifold import CMSSManifold, ManifoldConfig
from .remixer import RemixerConfig, SoundSourceRemixer
from .temporal import TemporalAggregator, TemporalConfig
from .variational_mlp import PlainLayer, ResidualBlock, VariationalMLP

StateDict = dict[str, Tensor]

GUIDANCE_TO_SOURCE_CODE = {"generator": "clap", "manifold+generator": "manifold+clap"}  # else "manifold"
SOURCE_CODE_TO_GUIDANCE = {"manifold": "manifold", "clap": "generator", "manifold+clap": "manifold+generator"}
# Released TransEncoder defaults, used when the styler config leaves a value out.
RELEASED_STYLER_DEFAULTS = {"embed_dim": 512, "num_layers": 3, "nhead": 8, "dropout": 0.2, "exp_rate": 1}
RELEASED_TEMPORAL_CONFIG = TemporalConfig(
    clap_dim=512,
    num_frames=64,
    num_layers=1,
    num_heads=8,
    ffn_multiplier=2,
    dropout=0.2,
    position_resolution=1024,
    key_softmax="features",
)
MLP_PREFIX = "model.1.model."
UNUSED_MANIFOLD_KEYS = ("self_logit_scale",)


# --------------------------------------------------------------------------- helpers


def _shape(t: Tensor | torch.Size) -> tuple[int, ...]:
    return tuple(t.shape if isinstance(t, Tensor) else t)


def _expected_shapes(module_cls: type[nn.Module], config: Any) -> dict[str, tuple[int, ...]]:
    """Parameter/buffer shapes of ``module_cls(config)``. Built on CPU: these modules are a few
    million parameters at most, and the meta device costs seconds of imports on first use."""
    return {k: _shape(v) for k, v in module_cls(config).state_dict().items()}


def _checked(
    mapped: dict[str, tuple[str, Tensor]],
    expected: dict[str, tuple[int, ...]],
    what: str,
    reshape_ok: tuple[str, ...] = (),
) -> StateDict:
    """Shape-check a ``{our_key: (their_key, tensor)}`` mapping and require every expected key."""
    out: StateDict = {}
    for ours, (theirs, tensor) in mapped.items():
        if ours not in expected:
            raise InputError(f"{what}: key '{theirs}' maps to '{ours}', which our model does not have")
        want = expected[ours]
        if _shape(tensor) != want:
            if ours in reshape_ok and tensor.numel() == torch.Size(want).numel():
                tensor = tensor.reshape(want)
            else:
                raise InputError(
                    f"{what}: key '{theirs}' has shape {_shape(tensor)} but our config expects {want} "
                    f"(for '{ours}'); the config does not match the weights"
                )
        out[ours] = tensor
    missing = sorted(set(expected) - set(out))
    if missing:
        raise InputError(
            f"{what}: the checkpoint lacks weights for {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    return out


def _translate(key: str, rules: list[tuple[str, str]]) -> str | None:
    """Rewrite ``key`` by the first matching (source prefix, target prefix) rule; ``{i}`` = an index."""
    for source, target in rules:
        pattern = "^" + re.escape(source).replace(re.escape("{i}"), r"(?P<i>\d+)")
        match = re.match(pattern, key)
        if match:
            head = target.format(i=match.group("i")) if "{i}" in target else target
            return head + key[match.end() :]
    return None


def _apply_rules(
    state: Mapping[str, Tensor], rules: list[tuple[str, str]], what: str, ignore: tuple[str, ...] = ()
) -> dict[str, tuple[str, Tensor]]:
    mapped: dict[str, tuple[str, Tensor]] = {}
    for key, tensor in state.items():
        if key in ignore:
            continue
        ours = _translate(key, rules)
        if ours is None:
            raise InputError(
                f"{what}: unrecognised key '{key}' (shape {_shape(tensor)}); not an SS2A checkpoint?"
            )
        mapped[ours] = (key, tensor)
    return mapped


def _inverse(rules: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(ours, theirs) for theirs, ours in rules]


# --------------------------------------------------------------------------- residual MLPs


def _mlp_units(
    state: Mapping[str, Tensor], what: str, their_prefix: str = ""
) -> list[tuple[str, dict[str, str]]]:
    """Parse a released MLP (keys relative to ``model.1.model.``) into ordered layers.

    Returns ``[(kind, {our_sub_name: their_key_prefix})]`` with kind "residual" (fc1, norm1, fc2,
    norm2, shortcut) or "plain" (fc, norm).
    """
    groups: dict[int, list[str]] = {}
    for key in state:
        head, _, _ = key.partition(".")
        if not head.isdigit():
            raise InputError(f"{what}: unexpected MLP key '{their_prefix}{MLP_PREFIX}{key}'")
        groups.setdefault(int(head), []).append(key)
    units: list[tuple[str, dict[str, str]]] = []
    for index in sorted(groups):
        keys = groups[index]
        if any(k.split(".")[1] in ("mod", "proj") for k in keys):
            inner: dict[int, str] = {}
            for k in keys:
                parts = k.split(".")
                if parts[1] == "mod":
                    inner[int(parts[2])] = f"{index}.mod.{parts[2]}"
            kinds = ["linear" if state[f"{inner[i]}.weight"].ndim == 2 else "norm" for i in sorted(inner)]
            if kinds != ["linear", "norm", "linear", "norm"]:
                raise InputError(
                    f"{what}: residual block {index} has layers {kinds}, expected Linear, LayerNorm ×2"
                )
            prefixes = [inner[i] for i in sorted(inner)]
            units.append(
                (
                    "residual",
                    {
                        "fc1": prefixes[0],
                        "norm1": prefixes[1],
                        "fc2": prefixes[2],
                        "norm2": prefixes[3],
                        "shortcut": f"{index}.proj",
                    },
                )
            )
        else:
            ndim = state[f"{index}.weight"].ndim
            if ndim == 2:
                units.append(("plain", {"fc": str(index)}))
            elif units and units[-1][0] == "plain" and "norm" not in units[-1][1]:
                units[-1][1]["norm"] = str(index)
            else:
                raise InputError(f"{what}: LayerNorm at MLP index {index} does not follow a Linear")
    return units


def _map_variational_mlp(
    state: Mapping[str, Tensor], module: VariationalMLP, our_prefix: str, what: str, their_prefix: str = ""
) -> dict[str, tuple[str, Tensor]]:
    """Released ``{model.0, model.1.model.*, out_mu, out_sigma}`` → our VariationalMLP keys.

    ``state`` keys are relative to the encoder; ``their_prefix`` is put back for messages."""
    mapped: dict[str, tuple[str, Tensor]] = {}
    mlp_state: dict[str, Tensor] = {}
    for key, tensor in state.items():
        if key.startswith(MLP_PREFIX):
            mlp_state[key[len(MLP_PREFIX) :]] = tensor
            continue
        ours = _translate(
            key, [("model.0.", "input_proj."), ("out_mu.", "mu_head."), ("out_sigma.", "logvar_head.")]
        )
        if ours is None:
            raise InputError(f"{what}: unrecognised key '{their_prefix}{key}' (shape {_shape(tensor)})")
        mapped[our_prefix + ours] = (their_prefix + key, tensor)
    units = _mlp_units(mlp_state, what, their_prefix)
    if len(units) != len(module.trunk):
        raise InputError(
            f"{what}: the checkpoint's MLP has {len(units)} layers but the config builds "
            f"{len(module.trunk)}; check 'layers' and 'resnet'"
        )
    for k, ((kind, names), layer) in enumerate(zip(units, module.trunk, strict=True)):
        ours_kind = "residual" if isinstance(layer, ResidualBlock) else "plain"
        if kind != ours_kind:
            raise InputError(
                f"{what}: MLP layer {k} is {kind} in the checkpoint but {ours_kind} in the config"
            )
        for sub, unit_prefix in names.items():
            for param in ("weight", "bias"):
                their_key = f"{unit_prefix}.{param}"
                if their_key in mlp_state:
                    mapped[f"{our_prefix}trunk.{k}.{sub}.{param}"] = (
                        their_prefix + MLP_PREFIX + their_key,
                        mlp_state[their_key],
                    )
    return mapped


def _export_variational_mlp(module: VariationalMLP) -> StateDict:
    """Our VariationalMLP → the released layout (plain layers at stride 4: Linear, LN, Dropout, GELU;
    a residual block followed by its GELU; inside a block Linear 0, LN 1, Linear 4, LN 5)."""
    out: StateDict = {f"model.0.{k}": v for k, v in module.input_proj.state_dict().items()}
    index = 0
    for layer in module.trunk:
        sd = layer.state_dict()
        if isinstance(layer, ResidualBlock):
            names = {"fc1": "mod.0", "norm1": "mod.1", "fc2": "mod.4", "norm2": "mod.5", "shortcut": "proj"}
            for k, v in sd.items():
                sub, _, param = k.partition(".")
                out[f"{MLP_PREFIX}{index}.{names[sub]}.{param}"] = v
            index += 2
        elif isinstance(layer, PlainLayer):
            for k, v in sd.items():
                sub, _, param = k.partition(".")
                out[f"{MLP_PREFIX}{index + (0 if sub == 'fc' else 1)}.{param}"] = v
            index += 4
    out.update({f"out_mu.{k}": v for k, v in module.mu_head.state_dict().items()})
    out.update({f"out_sigma.{k}": v for k, v in module.logvar_head.state_dict().items()})
    return {k: v.detach().clone() for k, v in out.items()}


# --------------------------------------------------------------------------- configs


def _require(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise InputError(f"released SS2A config: '{where}' lacks '{key}'")
    return mapping[key]


def configs_from_released(
    config: Mapping[str, Any], *, reference_compatible: bool = True
) -> tuple[ManifoldConfig, RemixerConfig]:
    """``ssv2a.json`` (schema of reference notes §1.4) → our manifold and remixer configs."""
    manifold = _require(config, "manifold", "top level")
    generator = _require(config, "generator", "top level")
    remixer = _require(config, "remixer", "top level")
    styler = {**RELEASED_STYLER_DEFAULTS, **remixer.get("styler", {})}
    for name, part in (("manifold", manifold), ("generator", generator)):
        if part.get("arch", "mlp") != "mlp" or not part.get("variational", True):
            raise InputError(
                f"released {name}: only the variational 'mlp' architecture can be imported "
                f"(got arch={part.get('arch')!r}, variational={part.get('variational')!r})"
            )
    if generator.get("disabled", False):
        raise InputError("released generator is disabled; SS2A needs the reconstructor χ")
    if bool(manifold.get("resnet", False)) != bool(generator.get("resnet", False)):
        raise InputError("released manifold and generator differ in 'resnet'; this importer needs them equal")
    if styler.get("arch", "transformer") != "transformer" or not styler.get("variational", True):
        raise InputError("released remixer: only the variational transformer styler can be imported")
    manifold_config = ManifoldConfig(
        clip_dim=int(config.get("clip_dim", 768)),
        clap_dim=int(config.get("clap_dim", 512)),
        manifold_dim=int(_require(config, "manifold_dim", "top level")),
        projector_widths=tuple(_require(manifold, "layers", "manifold")),
        reconstructor_widths=tuple(_require(generator, "layers", "generator")),
        residual=bool(manifold.get("resnet", False)),
        dropout=float(manifold.get("dropout", 0.1)),
    )
    remixer_config = RemixerConfig(
        manifold_dim=manifold_config.manifold_dim,
        clip_dim=manifold_config.clip_dim,
        clap_dim=manifold_config.clap_dim,
        source_code=GUIDANCE_TO_SOURCE_CODE.get(remixer.get("guidance", "manifold"), "manifold"),  # type: ignore[arg-type]
        embed_dim=int(styler["embed_dim"]),
        num_layers=int(styler["num_layers"]),
        num_heads=int(styler["nhead"]),
        ffn_multiplier=int(styler["exp_rate"]),
        dropout=float(styler["dropout"]),
        max_sources=int(remixer.get("slot", 64)),
        token_dropout=float(remixer.get("cfg", 0.0)),
        key_softmax="features" if reference_compatible else "tokens",
        attend_to_padding=reference_compatible,
    )
    return manifold_config, remixer_config


def released_config_from_configs(manifold: ManifoldConfig, remixer: RemixerConfig) -> dict[str, Any]:
    """The ``ssv2a.json`` fields our importer reads, for a manifold/remixer pair (tests, export)."""
    return {
        "checkpoints": "",
        "clip_dim": manifold.clip_dim,
        "clap_dim": manifold.clap_dim,
        "manifold_dim": manifold.manifold_dim,
        "manifold": {
            "arch": "mlp",
            "variational": True,
            "layers": list(manifold.projector_widths),
            "resnet": manifold.residual,
            "dropout": manifold.dropout,
        },
        "generator": {
            "arch": "mlp",
            "variational": True,
            "disabled": False,
            "layers": list(manifold.reconstructor_widths),
            "resnet": manifold.residual,
            "dropout": manifold.dropout,
        },
        "remixer": {
            "slot": remixer.max_sources,
            "guidance": SOURCE_CODE_TO_GUIDANCE[remixer.source_code],
            "cfg": remixer.token_dropout,
            "styler": {
                "arch": "transformer",
                "variational": True,
                "embed_dim": remixer.embed_dim,
                "num_layers": remixer.num_layers,
                "nhead": remixer.num_heads,
                "dropout": remixer.dropout,
                "exp_rate": remixer.ffn_multiplier,
            },
        },
    }


# --------------------------------------------------------------------------- key maps

_READOUT_RULES = [
    ("head_mu.model.0.", "mu_head.hidden.fc."),
    ("head_mu.model.1.", "mu_head.hidden.norm."),
    ("out_mu.", "mu_head.out."),
    ("head_sigma.model.0.", "logvar_head.hidden.fc."),
    ("head_sigma.model.1.", "logvar_head.hidden.norm."),
    ("out_sigma.", "logvar_head.out."),
]
REMIXER_RULES: list[tuple[str, str]] = [
    ("styler.in_proj.", "input_proj."),
    ("styler.pred_token", "readout_tokens"),
    ("styler.style_encoder.encoder.{i}.esa.", "encoder.layers.{i}.attention."),
    ("styler.style_encoder.encoder.{i}.ffn.", "encoder.layers.{i}.feed_forward."),
    *[("styler." + theirs, ours) for theirs, ours in _READOUT_RULES],
]
TEMPORAL_RULES: list[tuple[str, str]] = [
    ("pe.pe", "position_table"),
    ("pred_token", "readout_tokens"),
    ("encoder.encoder.{i}.esa.", "encoder.layers.{i}.attention."),
    ("encoder.encoder.{i}.ffn.", "encoder.layers.{i}.feed_forward."),
    *_READOUT_RULES,
]


def manifold_state_from_released(
    manifold_state: Mapping[str, Tensor], generator_state: Mapping[str, Tensor] | None, config: ManifoldConfig
) -> StateDict:
    """Released ``manifold_state`` + ``generator_state`` → a state dict for ``CMSSManifold(config)``."""
    if generator_state is None:
        raise InputError("released checkpoint has no generator_state; SS2A needs the reconstructor χ")
    skeleton = CMSSManifold(config)
    mapped: dict[str, tuple[str, Tensor]] = {}
    encoders: dict[str, dict[str, Tensor]] = {"clip_encoder": {}, "clap_encoder": {}}
    for key, tensor in manifold_state.items():
        head, _, rest = key.partition(".")
        if head in encoders and rest:
            encoders[head][rest] = tensor
        elif key == "logit_scale":
            mapped["logit_scale"] = (key, tensor)
        elif key not in UNUSED_MANIFOLD_KEYS:
            raise InputError(f"released manifold_state: unrecognised key '{key}' (shape {_shape(tensor)})")
    mapped.update(
        _map_variational_mlp(
            encoders["clip_encoder"],
            skeleton.clip_projector,
            "clip_projector.",
            "released manifold_state",
            "clip_encoder.",
        )
    )
    mapped.update(
        _map_variational_mlp(
            encoders["clap_encoder"],
            skeleton.clap_projector,
            "clap_projector.",
            "released manifold_state",
            "clap_encoder.",
        )
    )
    mapped.update(
        _map_variational_mlp(
            generator_state, skeleton.reconstructor, "reconstructor.", "released generator_state"
        )
    )
    return _checked(
        mapped, _expected_shapes(CMSSManifold, config), "released manifold", reshape_ok=("logit_scale",)
    )


def remixer_state_from_released(remixer_state: Mapping[str, Tensor], config: RemixerConfig) -> StateDict:
    """Released ``remixer_state`` → a state dict for ``SoundSourceRemixer(config)``."""
    mapped = _apply_rules(remixer_state, REMIXER_RULES, "released remixer_state")
    return _checked(mapped, _expected_shapes(SoundSourceRemixer, config), "released remixer")


def temporal_state_from_released(agg_state: Mapping[str, Tensor], config: TemporalConfig) -> StateDict:
    """Released ``agg.pth`` → a state dict for ``TemporalAggregator(config)``."""
    mapped = _apply_rules(agg_state, TEMPORAL_RULES, "released aggregator")
    return _checked(
        mapped,
        _expected_shapes(TemporalAggregator, config),
        "released aggregator",
        reshape_ok=("position_table",),
    )


def released_state_from_modules(
    manifold: CMSSManifold, remixer: SoundSourceRemixer, timestamp: str = ""
) -> dict[str, Any]:
    """Our modules → a dict laid out like ``ssv2a.pth`` (the inverse of the importer; for tests)."""
    manifold_state: StateDict = {
        "logit_scale": manifold.logit_scale.detach().clone(),
        "self_logit_scale": manifold.logit_scale.detach().clone(),
    }
    for ours, theirs in (("clip_projector", "clip_encoder"), ("clap_projector", "clap_encoder")):
        for k, v in _export_variational_mlp(getattr(manifold, ours)).items():
            manifold_state[f"{theirs}.{k}"] = v
    remixer_state = {
        _translate(k, _inverse(REMIXER_RULES)) or k: v.detach().clone()
        for k, v in remixer.state_dict().items()
    }
    return {
        "timestamp": timestamp,
        "manifold_state": manifold_state,
        "generator_state": _export_variational_mlp(manifold.reconstructor),
        "remixer_state": remixer_state,
    }


def released_temporal_state(aggregator: TemporalAggregator) -> StateDict:
    """Our aggregator → a dict laid out like ``agg.pth`` (``pe.pe`` as [R, 1, D])."""
    out: StateDict = {}
    for k, v in aggregator.state_dict().items():
        theirs = _translate(k, _inverse(TEMPORAL_RULES)) or k
        out[theirs] = v.detach().clone().unsqueeze(1) if k == "position_table" else v.detach().clone()
    return out


# --------------------------------------------------------------------------- loading files


@dataclass
class ReleasedSS2A:
    """The learnable part of the released SS2A model, in our modules (eval mode)."""

    manifold: CMSSManifold
    remixer: SoundSourceRemixer
    timestamp: str | None = None


def _torch_load(path: str | os.PathLike, map_location: str | torch.device) -> Any:
    if not os.path.isfile(path):
        raise InputError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickles with code, truncated files: fail with one line
        raise InputError(
            f"{path}: cannot read as a weights-only torch checkpoint ({type(exc).__name__}: {exc})"
        ) from None


def _read_config(config: str | os.PathLike | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(config, Mapping):
        return config
    import json

    try:
        with open(config, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the SS2A config {config}: {exc}") from None


def load_released_ss2a(
    checkpoint: str | os.PathLike,
    config: str | os.PathLike | Mapping[str, Any],
    *,
    reference_compatible: bool = True,
    map_location: str | torch.device = "cpu",
) -> ReleasedSS2A:
    """Load ``ssv2a.pth`` with its ``ssv2a.json`` into our manifold and remixer."""
    manifold_config, remixer_config = configs_from_released(
        _read_config(config), reference_compatible=reference_compatible
    )
    data = _torch_load(checkpoint, map_location)
    if not isinstance(data, Mapping) or "manifold_state" not in data or "remixer_state" not in data:
        raise InputError(
            f"{checkpoint}: expected a dict with manifold_state, generator_state and remixer_state"
        )
    manifold = CMSSManifold(manifold_config)
    manifold.load_state_dict(
        manifold_state_from_released(data["manifold_state"], data.get("generator_state"), manifold_config)
    )
    remixer = SoundSourceRemixer(remixer_config)
    remixer.load_state_dict(remixer_state_from_released(data["remixer_state"], remixer_config))
    timestamp = data.get("timestamp")
    return ReleasedSS2A(manifold.eval(), remixer.eval(), str(timestamp) if timestamp is not None else None)


def load_released_temporal(
    checkpoint: str | os.PathLike,
    *,
    config: TemporalConfig | None = None,
    reference_compatible: bool = True,
    map_location: str | torch.device = "cpu",
) -> TemporalAggregator:
    """Load ``agg.pth`` (the released aggregator's fixed architecture unless ``config`` says otherwise)."""
    config = config or RELEASED_TEMPORAL_CONFIG
    config = replace(config, key_softmax="features" if reference_compatible else "tokens")
    data = _torch_load(checkpoint, map_location)
    if not isinstance(data, Mapping):
        raise InputError(f"{checkpoint}: expected a state dict")
    model = TemporalAggregator(config)
    model.load_state_dict(temporal_state_from_released(data, config))
    return model.eval()
