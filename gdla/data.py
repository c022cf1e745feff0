"""Real data for the book's chapters, loaded without any download.

:func:`grace_hopper` is the portrait of Grace Hopper that matplotlib ships as a
sample image, as a grayscale matrix: the real-world matrix of the low-rank
approximation and matrix completion chapters.
"""

from __future__ import annotations

import numbers

import torch

from ._validation import OptionError

__all__ = ["grace_hopper", "LUMINANCE"]

#: Weights of red, green and blue in the luma of ITU-R BT.601, used to turn colour into gray.
LUMINANCE = (0.299, 0.587, 0.114)


def grace_hopper(*, downsample: int = 1, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The portrait of Grace Hopper shipped with matplotlib, as a grayscale matrix in [0, 1].

    The 600 x 512 RGB photograph ``grace_hopper.jpg`` from matplotlib's sample
    data is read from disk (no network), each pixel becomes its luma
    ``0.299 R + 0.587 G + 0.114 B`` (:data:`LUMINANCE`), and the 8-bit values are
    scaled to [0, 1]: row ``i`` of the matrix is row ``i`` of the picture, top to
    bottom.

    Parameters
    ----------
    downsample : int, optional
        Average non-overlapping blocks of ``downsample x downsample`` pixels, for a
        smaller matrix of shape ``(600 // downsample, 512 // downsample)``; rows and
        columns that do not fill a block are dropped.  Default 1 (full size).
    dtype : torch.dtype, optional
        Floating dtype of the result.  Default ``torch.float64``.

    Returns
    -------
    Tensor
        The image, shape (600, 512) at full size, values in [0, 1].

    Raises
    ------
    OptionError
        ``downsample`` is not a positive integer.

    Examples
    --------
    >>> A = grace_hopper()
    >>> A.shape, A.dtype
    (torch.Size([600, 512]), torch.float64)
    >>> 0.0 <= float(A.min()) and float(A.max()) <= 1.0
    True
    >>> grace_hopper(downsample=4).shape
    torch.Size([150, 128])
    """
    integer = isinstance(downsample, numbers.Integral) and not isinstance(downsample, bool)
    if not integer or downsample < 1:
        raise OptionError(
            "gdla.data.grace_hopper", "downsample to be a positive integer", repr(downsample)
        )
    from matplotlib import cbook
    from matplotlib import image as mpimg

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    pixels = mpimg.imread(str(path))
    rgb = torch.from_numpy(pixels[..., :3].copy()).to(torch.float64) / 255
    gray = rgb @ torch.tensor(LUMINANCE, dtype=torch.float64)
    if downsample > 1:
        gray = torch.nn.functional.avg_pool2d(gray[None, None], downsample)[0, 0]
    return gray.clamp(0.0, 1.0).to(dtype).contiguous()
