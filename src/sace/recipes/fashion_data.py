"""Fashion-MNIST data, class metadata and caption sets, as one namespace for the recipes.

The code lives in the ``fashion`` domain (:mod:`sace.domains.fashion.data` for the files and image
conversions, :mod:`sace.domains.fashion.classes` for classes, captions and concept words); this module
re-exports both so that ``from sace.recipes import fashion_data as fd`` keeps working.
"""

from ..domains.fashion.classes import *  # noqa: F403
from ..domains.fashion.classes import __all__ as _classes_all
from ..domains.fashion.data import *  # noqa: F403
from ..domains.fashion.data import __all__ as _data_all

__all__ = [*_data_all, *_classes_all]
