"""The one exception of the image tools: its message says what is wrong and what to do."""


class ImageError(Exception):
    """An image, key or build input that cannot be used; ``str()`` is a message for a person."""
