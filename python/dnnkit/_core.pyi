"""
dnnkit native core (private; use the dnnkit package)

Type stub of the compiled module, generated with pybind11-stubgen from the bindings' docstrings and kept
true by tests/test_stub.py (every bound name, parameter, annotation, default and return type).
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
__all__: list[str] = ['MLP32', 'MLP64', 'Trainer32', 'Trainer64', 'blas_info', 'dropout_mask', 'get_num_threads', 'gradcheck_component_directions', 'gradcheck_coords', 'gradcheck_directions', 'set_num_threads', 'train_keep_mask']
class MLP64:
    def __init__(self, arg0: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], arg1: str, arg2: str, arg3: str, arg4: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def backward(self, arg0: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], arg1: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], arg2: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], arg3: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], arg4: typing.SupportsInt | typing.SupportsIndex, arg5: typing.SupportsInt | typing.SupportsIndex, arg6: list, arg7: typing.SupportsFloat | typing.SupportsIndex, arg8: typing.SupportsFloat | typing.SupportsIndex, arg9: object) -> float:
        ...
    def cache(self) -> dict:
        ...
    def cost(self, arg0: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], arg1: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], arg2: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], arg3: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], arg4: typing.SupportsInt | typing.SupportsIndex, arg5: typing.SupportsInt | typing.SupportsIndex, arg6: list, arg7: typing.SupportsFloat | typing.SupportsIndex, arg8: typing.SupportsFloat | typing.SupportsIndex) -> float:
        ...
    def forward(self, arg0: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], arg1: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], arg2: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], arg3: typing.SupportsInt | typing.SupportsIndex, arg4: typing.SupportsInt | typing.SupportsIndex, arg5: list) -> numpy.typing.NDArray[numpy.float64]:
        ...
    def release(self) -> None:
        ...
    @property
    def n_params(self) -> int:
        ...
class MLP32:
    def __init__(self, arg0: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], arg1: str, arg2: str, arg3: str, arg4: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def backward(self, arg0: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], arg1: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], arg2: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], arg3: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], arg4: typing.SupportsInt | typing.SupportsIndex, arg5: typing.SupportsInt | typing.SupportsIndex, arg6: list, arg7: typing.SupportsFloat | typing.SupportsIndex, arg8: typing.SupportsFloat | typing.SupportsIndex, arg9: object) -> float:
        ...
    def cache(self) -> dict:
        ...
    def cost(self, arg0: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], arg1: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], arg2: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], arg3: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], arg4: typing.SupportsInt | typing.SupportsIndex, arg5: typing.SupportsInt | typing.SupportsIndex, arg6: list, arg7: typing.SupportsFloat | typing.SupportsIndex, arg8: typing.SupportsFloat | typing.SupportsIndex) -> float:
        ...
    def forward(self, arg0: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], arg1: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], arg2: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], arg3: typing.SupportsInt | typing.SupportsIndex, arg4: typing.SupportsInt | typing.SupportsIndex, arg5: list) -> numpy.typing.NDArray[numpy.float32]:
        ...
    def release(self) -> None:
        ...
    @property
    def n_params(self) -> int:
        ...
class Trainer64:
    def __init__(self, dims: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], hidden: str, output: str, loss: str, alpha: typing.SupportsFloat | typing.SupportsIndex, X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], Y: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], optimizer: str, lr: typing.SupportsFloat | typing.SupportsIndex, beta: typing.SupportsFloat | typing.SupportsIndex, beta1: typing.SupportsFloat | typing.SupportsIndex, beta2: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, l2: typing.SupportsFloat | typing.SupportsIndex, l1: typing.SupportsFloat | typing.SupportsIndex, keep: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], seed: typing.SupportsInt | typing.SupportsIndex, batch_size: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def last_stats(self) -> dict:
        ...
    def run(self, theta: object, n_epochs: typing.SupportsInt | typing.SupportsIndex, stop_at_step: typing.SupportsInt | typing.SupportsIndex = -1, poll_interval: typing.SupportsFloat | typing.SupportsIndex = 0.05) -> dict:
        """
        Run up to n_epochs on theta in place; returns {'epochs', 'interrupted', and the last finished epoch's 'cost', 'error', 'grad_norms', 'steps'}. On an interrupt theta holds the last finished epoch's parameters.
        """
    @property
    def batch_size(self) -> int:
        ...
    @property
    def epoch(self) -> int:
        ...
    @property
    def step(self) -> int:
        ...
    @property
    def steps_per_epoch(self) -> int:
        ...
class Trainer32:
    def __init__(self, dims: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], hidden: str, output: str, loss: str, alpha: typing.SupportsFloat | typing.SupportsIndex, X: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], Y: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], optimizer: str, lr: typing.SupportsFloat | typing.SupportsIndex, beta: typing.SupportsFloat | typing.SupportsIndex, beta1: typing.SupportsFloat | typing.SupportsIndex, beta2: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, l2: typing.SupportsFloat | typing.SupportsIndex, l1: typing.SupportsFloat | typing.SupportsIndex, keep: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], seed: typing.SupportsInt | typing.SupportsIndex, batch_size: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def last_stats(self) -> dict:
        ...
    def run(self, theta: object, n_epochs: typing.SupportsInt | typing.SupportsIndex, stop_at_step: typing.SupportsInt | typing.SupportsIndex = -1, poll_interval: typing.SupportsFloat | typing.SupportsIndex = 0.05) -> dict:
        """
        Run up to n_epochs on theta in place; returns {'epochs', 'interrupted', and the last finished epoch's 'cost', 'error', 'grad_norms', 'steps'}. On an interrupt theta holds the last finished epoch's parameters.
        """
    @property
    def batch_size(self) -> int:
        ...
    @property
    def epoch(self) -> int:
        ...
    @property
    def step(self) -> int:
        ...
    @property
    def steps_per_epoch(self) -> int:
        ...
def blas_info() -> dict:
    ...
def dropout_mask(n: typing.SupportsInt | typing.SupportsIndex, m: typing.SupportsInt | typing.SupportsIndex, keep_prob: typing.SupportsFloat | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, step: typing.SupportsInt | typing.SupportsIndex, layer: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.uint8]:
    """
    0/1 keep decisions of layer `layer` for units x examples, as the native passes draw them
    """
def get_num_threads() -> int:
    ...
def gradcheck_component_directions(dims: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], hidden: str, output: str, loss: str, alpha: typing.SupportsFloat | typing.SupportsIndex, theta: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], Y: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], keep: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], seed: typing.SupportsInt | typing.SupportsIndex, step: typing.SupportsInt | typing.SupportsIndex, masks: list, l2: typing.SupportsFloat | typing.SupportsIndex, l1: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, V: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> tuple:
    """
    Directional differences along row t of V restricted to each component c (W1, b1, W2, ...): one native
    call for all 2L*r directions, no dense direction matrix -> (approx, kinks, J0), index c*r + t.
    """
def gradcheck_coords(dims: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], hidden: str, output: str, loss: str, alpha: typing.SupportsFloat | typing.SupportsIndex, theta: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], Y: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], keep: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], seed: typing.SupportsInt | typing.SupportsIndex, step: typing.SupportsInt | typing.SupportsIndex, masks: list, l2: typing.SupportsFloat | typing.SupportsIndex, l1: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, indices: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], fast_path: bool = True, stats: bool = False) -> tuple:
    """
    Centered differences for flat coordinates -> (approx, kink_flags, J0[, stats]). Flags: 1 activation kink,
    2 L1 kink. fast_path=False forces the general delta-propagation path for every coordinate (the exact
    linear-region shortcut for relu/leaky_relu/linear hidden layers is otherwise used where no kink is within
    reach). stats=True also returns {'fast', 'general', 'routed'}: coordinates done by each path, and those
    the fast path handed to the general one.
    """
def gradcheck_directions(dims: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], hidden: str, output: str, loss: str, alpha: typing.SupportsFloat | typing.SupportsIndex, theta: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], Y: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], keep: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], seed: typing.SupportsInt | typing.SupportsIndex, step: typing.SupportsInt | typing.SupportsIndex, masks: list, l2: typing.SupportsFloat | typing.SupportsIndex, l1: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, directions: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> tuple:
    """
    Centered directional differences (J(t+e d) - J(t-e d)) / 2e for each row d -> (approx, kinks, J0).
    """
def set_num_threads(arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
    ...
def train_keep_mask(n: typing.SupportsInt | typing.SupportsIndex, m: typing.SupportsInt | typing.SupportsIndex, keep_prob: typing.SupportsFloat | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, step: typing.SupportsInt | typing.SupportsIndex, layer: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.uint8]:
    """
    The passes' mask generator (vectorised Philox), as the training loop draws masks: the same 0/1 bits as dropout_mask
    """
