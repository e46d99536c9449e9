"""Linear-probe accuracy: how linearly separable the classes are in a representation.

A multinomial logistic regression is fitted on train features (standardised with the train
mean and standard deviation) by full-batch L-BFGS from zero weights, so the result is
deterministic, and scored by its accuracy on test features.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

MAX_STEPS = 500
GRAD_TOLERANCE = 1e-6


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray, l2: float = 1e-4, max_steps: int = MAX_STEPS) -> float:
    """Test accuracy of an L2-regularised softmax regression fitted on the train features.

    The loss is mean cross-entropy plus ``l2 * |W|^2`` (biases unpenalised); L-BFGS runs until
    the gradient norm falls below 1e-6 or for ``max_steps`` steps.
    """
    train_x, test_x = _features(train_x, "train_x"), _features(test_x, "test_x")
    train_y, test_y = _labels(train_y, train_x, "train_y"), _labels(test_y, test_x, "test_y")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train and test features differ in dimension: "
                         f"{train_x.shape[1]} vs {test_x.shape[1]}")
    mean = train_x.mean(axis=0)
    std = train_x.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)  # constant features stay constant (zero) instead of NaN
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    weights, bias = _fit(jnp.asarray((train_x - mean) / std, jnp.float32), jnp.asarray(train_y),
                         num_classes, float(l2), int(max_steps))
    logits = jnp.asarray((test_x - mean) / std, jnp.float32) @ weights + bias
    return float(np.mean(np.asarray(logits.argmax(axis=-1)) == test_y))


def _features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return x


def _labels(y: np.ndarray, x: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError(f"{name} must hold {len(x)} non-negative integer labels, "
                         f"got shape {y.shape} and dtype {y.dtype}")
    return y


@functools.partial(jax.jit, static_argnums=(2, 4))
def _fit(x: jax.Array, y: jax.Array, num_classes: int, l2: float,
         max_steps: int) -> tuple[jax.Array, jax.Array]:
    # One-hot targets rather than a label gather: XLA constant-folds the gather's transpose
    # into a slow scatter for large N.
    targets = jax.nn.one_hot(y, num_classes, dtype=x.dtype)

    def loss(params):
        logits = x @ params["w"] + params["b"]
        data_term = optax.softmax_cross_entropy(logits, targets).mean()
        return data_term + l2 * jnp.sum(params["w"] ** 2)

    optimizer = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(carry):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = optimizer.update(grad, state, params, value=value, grad=grad,
                                          value_fn=loss)
        return optax.apply_updates(params, updates), state

    def keep_going(carry):
        _, state = carry
        count = otu.tree_get(state, "count")
        grad = otu.tree_get(state, "grad")
        # A converged L-BFGS would divide by a vanishing curvature: stop before that.
        return (count == 0) | ((count < max_steps) & (otu.tree_norm(grad) >= GRAD_TOLERANCE))

    params = {"w": jnp.zeros((x.shape[1], num_classes), x.dtype),
              "b": jnp.zeros((num_classes,), x.dtype)}
    params, _ = jax.lax.while_loop(keep_going, step, (params, optimizer.init(params)))
    return params["w"], params["b"]
