"""ONNX graphs of the fitted regressors, in double precision, built with ``onnx.helper``.

Why not skl2onnx (1.20.0, the latest release, with scikit-learn 1.9): its Gaussian-process
converter fails on the Matérn ν=2.5 kernel (``np.array([1], dtype=type)`` makes an object
array in ``_gp_kernels.convert_kernel``) and, with ``normalize_y`` on a 1-D target, on
``return_std`` (onnx/sklearn-onnx PR #1252, not yet released); its tree-ensemble regressors are
float32 only (``TreeEnsembleRegressor`` outputs float), which puts ~3e-5 relative error on a
ln-space prediction. The graphs below are short, exact (double throughout) and follow
scikit-learn's own prediction code line by line:

- trees: ``ai.onnx.ml`` opset 5 ``TreeEnsemble`` (double splits and leaves). The input is cast
  to float32 and back first because scikit-learn's trees compare float32 copies of the
  features against float64 thresholds.
- GP: ``GaussianProcessRegressor.predict(return_std=True)``: K* = k(x, X_train),
  mean = K* alpha * y_std + y_mean, var = k(x, x) - rowsum((K* L^-T)^2) with L L^T = K,
  clipped at 0, times y_std^2.

Every model reads one input ``features`` (double, [N, F]) and writes ``log_mean`` (double,
[N]); a GP also writes ``log_std``. Both are in ln(target units).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper
from scipy.linalg import solve_triangular
from sklearn.ensemble import ExtraTreesRegressor

from controller.estimators.regressors import BASE_COLUMNS, GPModel, LinearBase, TreeModel

INPUT = "features"
LOG_MEAN = "log_mean"
LOG_STD = "log_std"
OPSETS = (("", 21), ("ai.onnx.ml", 5))
IR_VERSION = 10


class _Builder:
    """Collects nodes and initialisers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: npt.ArrayLike, hint: str = "c", dtype: npt.DTypeLike = np.float64
              ) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None,
           output: str | None = None, **attrs: Any) -> str:
        """A node; ``attrs`` go to ``helper.make_node`` (its ``domain`` and the attributes)."""
        out = output or self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name(op_type),
                                           **attrs))
        return out

    def model(self, n_features: int, outputs: list[str], doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "joulefarm_estimator",
            [helper.make_tensor_value_info(INPUT, TensorProto.DOUBLE, [None, n_features])],
            [helper.make_tensor_value_info(o, TensorProto.DOUBLE, [None]) for o in outputs],
            initializer=self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v)
                                                        for d, v in OPSETS],
                                  producer_name="joulefarm", doc_string=doc)
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model


def _base(b: _Builder, base: LinearBase) -> str:
    """ln(max(c0 + (exp(x[:, cols]) - 1) @ c, floor)) as a [N] vector."""
    raw = b.op("Sub", [b.op("Exp", [b.op("Gather", [INPUT, b.const(BASE_COLUMNS, "cols",
                                                                     np.int64)], axis=1)]),
                       b.const(1.0)])
    linear = b.op("Add", [b.op("MatMul", [raw, b.const(base.coef[1:].reshape(-1, 1))]),
                          b.const(base.coef[0])])
    log = b.op("Log", [b.op("Max", [linear, b.const(base.floor)])])
    return b.op("Reshape", [log, b.const([-1], "shape", np.int64)])


def _tree_ensemble(b: _Builder, trees: ExtraTreesRegressor) -> str:
    """Mean over the trees of ``trees`` as a [N] vector (weights folded into the leaves)."""
    weight = 1.0 / len(trees.estimators_)
    features: list[int] = []
    splits: list[float] = []
    roots: list[int] = []
    leaves: list[float] = []
    true_ids: list[int] = []
    true_leaf: list[int] = []
    false_ids: list[int] = []
    false_leaf: list[int] = []
    for estimator in trees.estimators_:
        tree = estimator.tree_
        left, right = tree.children_left, tree.children_right
        interior = [n for n in range(tree.node_count) if left[n] != -1]
        leaf_nodes = [n for n in range(tree.node_count) if left[n] == -1]
        leaf_index = {n: len(leaves) + i for i, n in enumerate(leaf_nodes)}
        node_index = {n: len(features) + i for i, n in enumerate(interior)}
        leaves += [float(tree.value[n].ravel()[0]) * weight for n in leaf_nodes]
        if not interior:  # a single-leaf tree: one split that always goes to that leaf
            roots.append(len(features))
            features.append(0)
            splits.append(math.inf)
            for ids, flags in ((true_ids, true_leaf), (false_ids, false_leaf)):
                ids.append(leaf_index[0])
                flags.append(1)
            continue
        roots.append(node_index[0])
        for n in interior:
            features.append(int(tree.feature[n]))
            splits.append(float(tree.threshold[n]))
            for child, ids, flags in ((left[n], true_ids, true_leaf),
                                      (right[n], false_ids, false_leaf)):
                is_leaf = left[child] == -1
                ids.append(leaf_index[child] if is_leaf else node_index[child])
                flags.append(int(is_leaf))
    as_float = b.op("Cast", [INPUT], to=TensorProto.FLOAT)
    as_double = b.op("Cast", [as_float], to=TensorProto.DOUBLE)
    out = b.op(
        "TreeEnsemble", [as_double], domain="ai.onnx.ml", n_targets=1, aggregate_function=1,
        post_transform=0, tree_roots=roots, nodes_featureids=features,
        nodes_splits=numpy_helper.from_array(np.asarray(splits, dtype=np.float64)),
        nodes_modes=numpy_helper.from_array(np.zeros(len(features), dtype=np.uint8)),
        nodes_truenodeids=true_ids, nodes_trueleafs=true_leaf, nodes_falsenodeids=false_ids,
        nodes_falseleafs=false_leaf, leaf_targetids=[0] * len(leaves),
        leaf_weights=numpy_helper.from_array(np.asarray(leaves, dtype=np.float64)))
    return b.op("Reshape", [out, b.const([-1], "shape", np.int64)])


def tree_model_proto(model: TreeModel, n_features: int, doc: str = "") -> onnx.ModelProto:
    """``log_mean = base(x) + trees(x)``."""
    b = _Builder()
    b.op("Add", [_base(b, model.base), _tree_ensemble(b, model.trees)], output=LOG_MEAN)
    return b.model(n_features, [LOG_MEAN], doc)


def gp_model_proto(model: GPModel, n_features: int, doc: str = "") -> onnx.ModelProto:
    """``log_mean = base(x) + GP mean``, ``log_std = GP standard deviation``."""
    gp = model.gp
    constant, length_scale, noise = model.kernel_parts
    y_mean = float(np.ravel(gp._y_train_mean)[0])
    y_std = float(np.ravel(gp._y_train_std)[0])
    # K^-1 = L^-T L^-1, so rowsum((K* K^-1) * K*) = rowsum((K* L^-T)^2): a sum of squares
    # loses far less to cancellation than the product with K^-1 itself.
    l_inv_t = solve_triangular(gp.L_, np.eye(gp.L_.shape[0]), lower=True).T
    train = np.asarray(gp.X_train_, dtype=np.float64) / length_scale

    b = _Builder()
    x = b.op("Gather", [INPUT, b.const(model.columns, "cols", np.int64)], axis=1)
    z = b.op("Div", [b.op("Div", [b.op("Sub", [x, b.const(model.x_mean)]),
                                  b.const(model.x_scale)]), b.const(length_scale)])
    # Exact pairwise differences ([N, n, d]) rather than |a|^2 + |b|^2 - 2ab: no cancellation
    # near training points, where scikit-learn's cdist is exact too.
    diff = b.op("Sub", [b.op("Unsqueeze", [z, b.const([1], "axes", np.int64)]),
                        b.const(train[None, :, :])])
    dist = b.op("Sqrt", [b.op("ReduceSumSquare", [diff, b.const([2], "axes", np.int64)],
                              keepdims=0)])
    t = b.op("Mul", [dist, b.const(math.sqrt(5.0))])
    poly = b.op("Add", [b.op("Add", [t, b.const(1.0)]),
                        b.op("Div", [b.op("Mul", [t, t]), b.const(3.0)])])
    k_trans = b.op("Mul", [b.op("Mul", [poly, b.op("Exp", [b.op("Neg", [t])])]),
                           b.const(constant)])
    mean = b.op("MatMul", [k_trans, b.const(np.ravel(gp.alpha_).reshape(-1, 1))])
    mean = b.op("Add", [b.op("Mul", [b.op("Reshape", [mean, b.const([-1], "shape", np.int64)]),
                                     b.const(y_std)]), b.const(y_mean)])
    b.op("Add", [_base(b, model.base), mean], output=LOG_MEAN)
    explained = b.op("ReduceSumSquare", [b.op("MatMul", [k_trans, b.const(l_inv_t)]),
                                         b.const([1], "axes", np.int64)], keepdims=0)
    variance = b.op("Max", [b.op("Sub", [b.const(constant + noise), explained]),
                            b.const(0.0)])
    b.op("Sqrt", [b.op("Mul", [variance, b.const(y_std ** 2)])], output=LOG_STD)
    return b.model(n_features, [LOG_MEAN, LOG_STD], doc)
