"""The description a compiled sweep reads: int64 words, and the arrays they name by index.

The compiled sweep (``_sweep.c``) is handed its work as a list of int64
words (counts, kinds, coefficient bits) and a list of operands the words
name by their index. :class:`Description` keeps the two together and checks
each operand as it is added: float64 (or a float32 input), broadcastable to
the grid, aligned and of whole-element strides (or read from a copy),
writable if written. What the
words say is the compiled pass's business (:mod:`panelglm._engine.compiled`);
how operands are indexed is kept here, apart from it.
"""

from __future__ import annotations

import numpy as np


class Description:
    """A sweep's description: int64 words, and the operands they name by index.

    Built on ``base``, it starts with that description's operands (and
    their indices), so that words written for either name the same arrays.
    """

    def __init__(self, shape: tuple[int, ...], base: Description | None = None) -> None:
        self.shape = tuple(shape)
        self.ndim = len(shape)
        self.words: list[int] = []
        self.operands: list[np.ndarray] = [] if base is None else list(base.operands)
        # (id of the array as given, output) -> index; the arrays as given are
        # kept, so that no other array takes their id meanwhile.
        self._index: dict[tuple[int, bool], int] = {} if base is None else dict(base._index)
        self._given: list[np.ndarray] = [] if base is None else list(base._given)
        self.copies: list[np.ndarray] = []  # inputs read from a copy (see index)

    def index(self, arr: np.ndarray | None, *, output: bool = False) -> int:
        """The operand index of an array broadcastable to the grid (-1 for None).

        The sweep reads aligned float64 elements at whole-element strides,
        and float32 inputs, which it converts as it reads them (a panel's
        stored cells, read without a float64 copy). An input that is not
        aligned (a field of a packed record array) is read from a copy, kept
        in :attr:`copies`. An ``output`` is float64 and written in place, so
        it cannot be copied. An array given again has its index.
        """
        if arr is None:
            return -1
        key = (id(arr), output)
        if key in self._index:
            return self._index[key]
        given, arr = arr, np.asarray(arr)
        if arr.dtype != np.float64 and (output or arr.dtype != np.float32):
            raise ValueError("sweep operands are float64 arrays (inputs may be float32)")
        if not arr.flags.aligned or any(s % arr.itemsize for s in arr.strides):
            if output:
                raise ValueError(
                    "sweep outputs are aligned float64 arrays of whole-element strides"
                )
            arr = np.array(arr)
            self.copies.append(arr)
        if output and not arr.flags.writeable:
            raise ValueError("sweep outputs are writable arrays")
        lead = self.ndim - arr.ndim  # axes of size 1 put in front: a view, never a copy
        shape = (1,) * max(lead, 0) + arr.shape
        if lead < 0 or any(n not in (1, g) for n, g in zip(shape, self.shape, strict=True)):
            raise ValueError(f"sweep operand of shape {arr.shape} on a grid of {self.shape}")
        arr = arr.reshape(shape)
        self._index[key] = len(self.operands)
        self.operands.append(arr)
        self._given.append(given)
        return self._index[key]

    def operand(self, arr: np.ndarray | None, *, output: bool = False) -> None:
        """Append the index of ``arr`` (see :meth:`index`) to the words."""
        self.words.append(self.index(arr, output=output))

    def array(self) -> np.ndarray:
        """The words as the int64 buffer the sweep reads."""
        return np.asarray(self.words, dtype=np.int64)
