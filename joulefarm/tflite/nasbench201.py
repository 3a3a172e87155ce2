"""NAS-Bench-201 networks (Dong & Yang, ICLR 2020) as float32 TFLite models, from their
architecture strings: the search space HELP and HW-NAS-Bench published device latencies for.

The CIFAR-10 macro network (``TinyNetwork``, C=16, N=5, 10 classes, input 1x32x32x3):

- stem: 3x3 convolution to 16 channels (its batch norm folded into the bias);
- three stages of five cells at 16, 32 and 64 channels (32x32, 16x16, 8x8), joined by two
  residual reduction blocks (ReLU, 3x3 convolution stride 2; ReLU, 3x3 convolution; plus
  a 2x2 average pool and 1x1 convolution on the shortcut);
- batch norm and ReLU (a per-channel MUL, then an ADD with the ReLU fused), global average
  pool, and a fully connected layer to 10 classes.

A cell is a DAG of four nodes; each of its six edges (``EDGES``) applies one op to an earlier
node, and a node is the sum of its incoming edges. ``nor_conv_KxK`` is ReLU then a KxK
convolution (batch norm folded), ``avg_pool_3x3`` a 3x3 average pool (stride 1, SAME padding,
which like PyTorch's ``count_include_pad=False`` leaves the padding out), ``skip_connect`` the
node itself, and ``none`` zero (PyTorch's ``x.mul(0.)``).

Every edge runs and every node sums all its edges, as PyTorch runs ``InferCell.forward``
(``none`` as a MUL by a scalar): the MACs of these networks rank the published latencies
(benchmarks/help_nb201.py) far better than those of networks with the ``none`` edges and
their dead ends folded away (Spearman 0.89 against 0.75 on the Raspberry Pi 4, 0.98 against
0.82 on a Titan RTX). Only networks whose cell output never depends on its input (see
``connected``) were pruned by the converters: they take under 0.5 ms on the Pi.
"""

from __future__ import annotations

from dataclasses import dataclass

from joulefarm.tflite.builder import (
    Add,
    AveragePool2D,
    Binary,
    Branch,
    Conv2D,
    FullyConnected,
    LayerSpec,
    Mean,
    Unary,
    build_model,
)

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
"""(from node, to node) of the six edges, in the order of the architecture string."""
INPUT_SHAPE = (1, 32, 32, 3)
STAGES: tuple[int, ...] = (16, 32, 64)
CELLS_PER_STAGE = 5
CLASSES = 10


@dataclass(frozen=True)
class Edge:
    op: str
    source: int
    target: int


def parse_arch(arch: str) -> tuple[Edge, ...]:
    """The six edges of an architecture string such as
    ``|nor_conv_3x3~0|+|skip_connect~0|none~1|+|...|``. ``ValueError`` names what is wrong."""
    nodes = arch.strip().strip("|").split("|+|")
    terms = [t for node in nodes for t in node.split("|")]
    if len(nodes) != 3 or len(terms) != len(EDGES):
        raise ValueError(f"not a NAS-Bench-201 architecture (3 nodes, 6 edges): {arch!r}")
    edges = []
    for term, (source, target) in zip(terms, EDGES, strict=True):
        op, _, given = term.partition("~")
        if op not in OPS:
            raise ValueError(f"unknown op {op!r} in {arch!r} (known: {', '.join(OPS)})")
        if given != str(source):
            raise ValueError(f"edge {term!r} of {arch!r} should come from node {source}")
        edges.append(Edge(op, source, target))
    return tuple(edges)


def connected(arch: str) -> bool:
    """Whether the cell's output (node 3) depends on its input through some non-``none``
    edge: the other architectures output a constant, and converters prune their network."""
    alive = {0}
    for edge in parse_arch(arch):
        if edge.op != "none" and edge.source in alive:
            alive.add(edge.target)
    return 3 in alive


class _Net:
    """Layers of one network in order, with where each node's tensor is."""

    def __init__(self) -> None:
        self.layers: list[LayerSpec] = []

    def emit(self, layer: LayerSpec, source: int | None = None) -> int:
        """Append ``layer`` (reading layer ``source``'s output, else the previous one's);
        returns its index."""
        previous = len(self.layers) - 1
        self.layers.append(layer if source is None or source == previous
                           else Branch(source, layer))
        return len(self.layers) - 1

    def relu_conv(self, source: int, channels: int, kernel: int, stride: int = 1) -> int:
        self.emit(Unary("RELU"), source)
        return self.emit(Conv2D(channels, (kernel, kernel), (stride, stride),
                                activation="NONE"))

    def edge(self, op: str, source: int, channels: int) -> int:
        """The layer holding ``op`` applied to layer ``source``'s output (``source`` itself
        for a skip connection)."""
        if op == "skip_connect":
            return source
        if op == "none":
            return self.emit(Binary("MUL", "scalar"), source)
        if op == "avg_pool_3x3":
            return self.emit(AveragePool2D((3, 3), (1, 1), "SAME"), source)
        kernel = 1 if op == "nor_conv_1x1" else 3
        return self.relu_conv(source, channels, kernel)

    def sum(self, terms: list[int]) -> int:
        total = terms[0]
        for term in terms[1:]:
            total = self.emit(Add(term), total)
        return total

    def cell(self, edges: tuple[Edge, ...], source: int, channels: int) -> int:
        nodes = [source]
        for target in (1, 2, 3):
            nodes.append(self.sum([self.edge(e.op, nodes[e.source], channels)
                                   for e in edges if e.target == target]))
        return nodes[3]

    def reduction(self, source: int, channels: int) -> int:
        self.relu_conv(source, channels, 3, stride=2)
        main = self.relu_conv(len(self.layers) - 1, channels, 3)
        self.emit(AveragePool2D((2, 2), (2, 2), "VALID"), source)
        self.emit(Conv2D(channels, (1, 1), activation="NONE"))
        return self.emit(Add(main))


def nb201_layers(arch: str) -> list[LayerSpec]:
    """The layer list of the CIFAR-10 network of ``arch`` (see the module docstring)."""
    edges = parse_arch(arch)
    net = _Net()
    x = net.emit(Conv2D(STAGES[0], (3, 3), activation="NONE"))
    for stage, channels in enumerate(STAGES):
        if stage:
            x = net.reduction(x, channels)
        for _ in range(CELLS_PER_STAGE):
            x = net.cell(edges, x, channels)
    net.emit(Binary("MUL", "channel"), x)
    net.emit(Binary("ADD", "channel"))
    net.emit(Unary("RELU"))
    net.emit(Mean((1, 2)))
    net.emit(FullyConnected(CLASSES, activation="NONE"))
    return net.layers


def nb201_model(arch: str, seed: int = 0) -> bytes:
    """The .tflite bytes of ``arch``'s CIFAR-10 network (random weights)."""
    return build_model(INPUT_SHAPE, nb201_layers(arch), seed=seed, name="nb201")


__all__ = ["EDGES", "OPS", "connected", "nb201_layers", "nb201_model", "parse_arch"]
