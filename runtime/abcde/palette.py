"""The six dermoscopic colours (ABCD rule of dermoscopy), as sRGB references."""

DERMOSCOPIC_COLOURS = {
    "white": (236, 232, 226),
    "red": (196, 48, 52),
    "light_brown": (176, 116, 66),
    "dark_brown": (98, 56, 32),
    "blue_gray": (104, 124, 148),
    "black": (28, 24, 26),
}
COLOUR_NAMES = tuple(DERMOSCOPIC_COLOURS)
