"""The built-in dataset: rendered people written in the real Market-1501, CUHK03 and MSMT17
formats.

No data can be downloaded here, so the pipeline's default dataset is drawn: each identity is
a set of attributes (clothing colours, a pattern, proportions, accessories) and each camera a
set of viewing conditions (lighting, colour cast, a textured scene, scale, blur, noise). An
identity seen by a camera is drawn facing one way, so a logo seen from the front or a
backpack seen from behind shows in some cameras only; a quarter of the identities are
look-alikes of another, differing in one attribute. Colour alone does not identify a person,
and an untrained network is dominated by the camera; a trained one learns the attributes.

Everything comes from one ``numpy.random.Generator`` seeded by `seed`: the same seed gives
byte-identical files. Drawing is vectorised over the pixels of an image (numpy masks).

The modules, by job: `people` (who a person is), `camera` (viewing conditions, scenes,
poses), `body` (a person's label map), `painter` (a person in a camera's picture), `layouts`
(the three datasets' files), `matlab` (.mat writers with fixed bytes).
"""

from reid.data.generated.layouts import (
    MARKET_FOLDER,
    MARKET_SIZE,
    generate_cuhk03,
    generate_market1501,
    generate_msmt17,
)

__all__ = [
    "MARKET_FOLDER",
    "MARKET_SIZE",
    "generate_cuhk03",
    "generate_market1501",
    "generate_msmt17",
]
