"""Whole DDIM loops as ONNX graphs, composed from traced pieces instead of traced whole.

Tracing a 10-step loop makes the exporter trace, decompose and optimise ten copies of the
transformer (24-90 s per mode on 2 cores). The loop is nothing but: the observation encoder
once, then per step ``cond = obs_cond + t_cond[i]`` (the timestep part is a constant: a mode
fixes its timesteps), one transformer pass, and the DDIM update (constants per step). So each
piece is traced once (``obs_encoder``, ``cond_denoiser``) and the loop is wired here: the
pieces' nodes are copied per step with renamed tensors, the weights stored once and shared.
The result is checked against ``UnifiedWorldModel.sample`` like every exported graph.
"""

from __future__ import annotations

import onnx
import onnx.inliner
import torch
from onnx import TensorProto, helper, numpy_helper

from uwm_ros.bundle.manifest import graph_signature
from uwm_training.model import UnifiedWorldModel
from uwm_training.model.diffusion import DDIMScheduler


def loop_graph(
    encoder: onnx.ModelProto,
    denoiser: onnx.ModelProto,
    model: UnifiedWorldModel,
    mode: str,
    batch: int,
) -> onnx.ModelProto:
    """The ``<mode>_loop`` graph from the ``obs_encoder`` and ``cond_denoiser`` graphs."""
    cfg, sched = model.cfg, model.scheduler
    inputs, outputs = graph_signature(cfg, f"{mode}_loop", batch)
    denoise_a, denoise_o = mode in ("policy", "inverse_dynamics", "joint"), mode in (
        "video", "forward_dynamics", "joint")  # fmt: skip
    t_cond = _timestep_conditions(model, mode)  # (S, M), in the model's dtype -> fp32
    b = _Builder()
    enc_weights = b.weights(encoder, "enc/")
    den_weights = b.weights(denoiser, "den/")
    b.copy(encoder, "enc/", {"images": "images", "proprio": "proprio"}, enc_weights,
           {"obs_cond": "obs_cond"})  # fmt: skip
    a = "actions" if mode == "forward_dynamics" else "noise_actions"
    o = "future_latents" if mode == "inverse_dynamics" else "noise_future"
    for i, t in enumerate(sched.timesteps):
        cond = b.op("Add", "obs_cond", b.const(f"t_cond{i}", t_cond[i : i + 1]))
        feeds = {"cond": cond, "actions": a} | ({"future": o} if cfg.future_obs else {})
        eps = b.copy(denoiser, f"s{i}/", feeds, den_weights)
        if denoise_a:
            a = b.ddim_step(sched, t, a, eps["eps_actions"], f"s{i}/a")
        if denoise_o:
            o = b.ddim_step(sched, t, o, eps["eps_future"], f"s{i}/o")
    results = {"actions": a, "future_latents": o}
    for name in outputs:
        b.nodes.append(helper.make_node("Identity", [results[name]], [name], name=f"out/{name}"))
    graph = helper.make_graph(
        b.nodes,
        f"{mode}_loop",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
        b.initializers,
    )
    composed = helper.make_model(graph, opset_imports=denoiser.opset_import)
    composed.ir_version = denoiser.ir_version
    onnx.checker.check_model(composed)
    return composed


@torch.no_grad()
def _timestep_conditions(model: UnifiedWorldModel, mode: str) -> torch.Tensor:
    """The timestep part of every step's adaLN conditioning, exactly as ``sample`` makes it."""
    cfg, den = model.cfg, model.denoiser
    steps = torch.tensor(model.scheduler.timesteps)
    held_a = 0 if mode == "forward_dynamics" else cfg.marginal_t
    held_o = 0 if mode == "inverse_dynamics" else cfg.marginal_t
    a_moves, o_moves = mode in ("policy", "inverse_dynamics", "joint"), mode in (
        "video", "forward_dynamics", "joint")  # fmt: skip
    t_a = steps if a_moves else torch.full_like(steps, int(held_a or 0))
    t_o = steps if o_moves else torch.full_like(steps, int(held_o or 0))
    return den.timestep_condition(t_a, t_o if cfg.future_obs else None).float()


class _Builder:
    """Nodes and initializers of the graph being composed, with unique tensor names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, name: str, value: torch.Tensor) -> str:
        self.initializers.append(numpy_helper.from_array(value.numpy(), name))
        return name

    def op(self, op_type: str, *inputs: str) -> str:
        out = self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out))
        return out

    def weights(self, piece: onnx.ModelProto, prefix: str) -> dict[str, str]:
        """Add a piece's initializers once (prefixed); returns old name -> new name."""
        renamed = {}
        for init in piece.graph.initializer:
            copy = onnx.TensorProto()
            copy.CopyFrom(init)
            copy.name = renamed[init.name] = prefix + init.name
            self.initializers.append(copy)
        return renamed

    def copy(
        self,
        piece: onnx.ModelProto,
        prefix: str,
        feeds: dict[str, str],
        weights: dict[str, str],
        names: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """Copy a piece's nodes with its inputs wired to ``feeds`` and its other tensors
        prefixed; returns its outputs' new names (``names`` may fix them)."""
        graph = onnx.inliner.inline_local_functions(piece).graph
        outputs = {o.name: prefix + o.name for o in graph.output} | (names or {})

        def name(x: str) -> str:
            if not x:
                return x  # an omitted optional input
            return feeds.get(x) or weights.get(x) or outputs.get(x) or prefix + x

        for node in graph.node:
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                   for a in node.attribute):  # fmt: skip
                raise ValueError(f"cannot compose {node.op_type} with a subgraph")
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = prefix + node.name
            copy.input[:] = [name(x) for x in node.input]
            copy.output[:] = [name(x) for x in node.output]
            self.nodes.append(copy)
        return outputs

    def ddim_step(self, sched: DDIMScheduler, t: int, x: str, out: str, hint: str) -> str:
        """x_t -> x_{t-Δ}: the arithmetic of ``DDIMScheduler.step`` with its fp32 constants."""
        table = sched.alphas_cumprod
        prev = max(t - sched.num_train_steps // sched.num_inference_steps, -1)
        a_t, a_prev = table[t : t + 1], table[prev].reshape(1)
        c = {k: self.const(self.fresh(f"{hint}_{k}"), v) for k, v in {
            "noise_t": (1 - a_t).sqrt(), "signal_t": a_t.sqrt(), "signal_prev": a_prev.sqrt(),
            "noise_prev": (1 - a_prev).sqrt(), "lo": torch.tensor(-1.0), "hi": torch.tensor(1.0),
        }.items()}  # fmt: skip
        if sched.prediction == "epsilon":
            eps = out
            x0 = self.op("Div", self.op("Sub", x, self.op("Mul", c["noise_t"], out)), c["signal_t"])
        else:
            x0 = out
            eps = self.op(
                "Div", self.op("Sub", x, self.op("Mul", c["signal_t"], out)), c["noise_t"]
            )
        x0 = self.op("Clip", x0, c["lo"], c["hi"])
        return self.op("Add", self.op("Mul", c["signal_prev"], x0),
                       self.op("Mul", c["noise_prev"], eps))  # fmt: skip
